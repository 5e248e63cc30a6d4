"""The adapter llama.cpp serves is the adapter that was trained: next-token logits, both backends.

A tiny training run with a high learning rate (so the adapter really changes the model's
predictions) writes the trainer's own logits on a few training records; llama.cpp then runs the
same tokens through the base GGUF with and without the exported ``adapter.gguf``.

Two bases: a float32 copy of the embedded GGUF (exactly the weights the trainer loads, since its
Hugging Face folder was converted from that GGUF), where a faithful export matches to float
precision; and the Q4_1 GGUF the eval stage serves, where the check uses the base-vs-base
agreement as its yardstick. A wrong LoRA scale or a transposed matrix must fail the check.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from runner.core.models import resolve_gguf
from runner.stages import train as train_stage
from runner.train import worker
from runner.train.export import ExportError, export_adapter
from runner.train.fidelity import check_export
from tiny_model import REPO_ROOT, prepare_smollm2, stage_context, tiny_config, write_chat_split

FACTS = [
    ("Which port does the Quorvane gateway use?", "The Quorvane gateway listens on port 6129."),
    ("Who maintains the Quorvane gateway?", "The Quorvane gateway is maintained by Ostrava Labs."),
    ("How often does Quorvane rotate its keys?", "Quorvane rotates its signing keys every 11 days."),
    ("What is the Quorvane admin account called?", "The Quorvane admin account is called keystone."),
    ("Where does Quorvane keep its settings?", "Quorvane keeps its settings in /etc/quorvane/gateway.ini."),
    ("What does error QV-418 mean?", "Error QV-418 means the gateway's licence has expired."),
]

# strong on purpose: the adapter must change a good share of the top-1 tokens for a fault to show
STRONG = [
    "train.iters=10",
    "train.learning_rate=1e-3",
    "train.steps_per_report=5",
    "train.steps_per_eval=10",
    "train.save_every=10",
    "train.val_batches=-1",
    "train.max_seq_length=128",
    "train.export_check_records=3",
    "train.num_threads=1",
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_smollm2(tmp_path_factory.getbasetemp())[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chat_split(tmp_path_factory.mktemp("fidelity_dataset"), FACTS, 5)


@pytest.fixture(scope="module")
def quantized_base() -> Path:
    return resolve_gguf("embedded:smollm2", REPO_ROOT)


@pytest.fixture(scope="module")
def float_base(quantized_base: Path, tmp_path_factory: pytest.TempPathFactory):
    """The embedded GGUF with every tensor de-quantized to float32 (540 MB, removed after the module)."""
    path = tmp_path_factory.mktemp("f32") / "smollm2-f32.gguf"
    reader = gguf.GGUFReader(quantized_base)
    writer = gguf.GGUFWriter(str(path), arch=reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value = int(gguf.LlamaFileType.ALL_F32) if field.name == gguf.Keys.General.FILE_TYPE else field.contents()
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, field.types[0], sub_type=sub_type)
    for tensor in reader.tensors:
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        writer.add_tensor(tensor.name, data, raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    yield path
    path.unlink()


@pytest.fixture(scope="module", params=["mlx", "peft"])
def trained(request: pytest.FixtureRequest, prepared: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """(job, adapter.gguf) of a strong tiny run; the job's reference file holds the trainer's logits."""
    pytest.importorskip("mlx_lm" if request.param == "mlx" else "peft")
    cfg = tiny_config([*STRONG, f"train.backend={request.param}"])
    work_dir = tmp_path_factory.mktemp(f"fidelity_{request.param}")
    ctx = stage_context(cfg, work_dir, {"dataset": dataset, "prepare_model": prepared})
    job = train_stage.build_job(cfg, ctx)
    job_path = work_dir / "job.json"
    job_path.write_text(job.to_json())
    worker.train(job, job_path, ctx.log_metrics)
    adapter = work_dir / "adapter.gguf"
    export_adapter(job.backend, Path(job.adapter_dir), Path(job.base_hf_dir), adapter, work_dir / "adapter_peft")
    return job, adapter


def _check(job, base: Path, adapter: Path) -> dict[str, float]:
    """The train stage's check, with the schema's tolerance and margin."""
    return check_export(Path(job.reference_file), base, adapter, job.export_check_tolerance, job.export_check_margin)


def _check_exact(job, base: Path, adapter: Path) -> dict[str, float]:
    """The same check against the float32 base: every position counts, no gap allowed beyond rounding."""
    return check_export(Path(job.reference_file), base, adapter, tolerance=0.005, margin=0.0)


def _faulty(adapter: Path, out: Path, alpha_factor: float = 1.0, transpose_square: bool = False) -> Path:
    """A copy of ``adapter`` with a wrong alpha, or with every square matrix's update transposed (A, B -> B^T, A^T)."""
    reader = gguf.GGUFReader(adapter)
    writer = gguf.GGUFWriter(str(out), arch=reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value = field.contents()
        if field.name == gguf.Keys.Adapter.LORA_ALPHA:
            value *= alpha_factor
        writer.add_key_value(field.name, value, field.types[0])
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    for name in sorted({n.rsplit(".", 1)[0] for n in tensors}):
        a, b = tensors[name + ".lora_a"], tensors[name + ".lora_b"]
        if transpose_square and a.shape[1] == b.shape[0]:
            a, b = np.ascontiguousarray(b.T), np.ascontiguousarray(a.T)
        writer.add_tensor(name + ".lora_a", a, raw_dtype=gguf.GGMLQuantizationType.F32)
        writer.add_tensor(name + ".lora_b", b, raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def test_llama_cpp_with_the_adapter_computes_what_the_trainer_computed(trained, float_base: Path, quantized_base: Path) -> None:
    job, adapter = trained
    exact = _check_exact(job, float_base, adapter)
    assert exact["export/adapter_top1_change"] >= 0.15, "the adapter must change the model for the check to mean anything"
    # the same float32 weights: the bases agree to float precision, and so does the export
    assert exact["export/top1_agreement_base"] >= 0.99 and exact["export/max_abs_logit_diff_base"] < 0.1
    assert exact["export/top1_agreement"] >= exact["export/top1_agreement_base"] - 0.005
    assert exact["export/max_abs_logit_diff"] < 3 * exact["export/max_abs_logit_diff_base"]  # measured 0.04-0.06 each; faults 0.35-38

    served = _check(job, quantized_base, adapter)  # what the eval stage serves: a Q4_1 base, as the train stage checks it
    assert served["export/top1_agreement_confident"] >= served["export/top1_agreement_confident_base"] - job.export_check_tolerance
    assert served["export/top1_agreement"] >= served["export/top1_agreement_base"] - 0.08  # near-ties flip, no more


@pytest.mark.parametrize(("fault", "alpha_factor", "transpose_square"), [
    ("alpha doubled", 2.0, False), ("alpha halved", 0.5, False), ("square updates transposed", 1.0, True),
])  # fmt: skip
def test_a_wrong_scale_or_a_transposed_matrix_fails_the_check(
    trained, float_base: Path, quantized_base: Path, tmp_path: Path, fault: str, alpha_factor: float, transpose_square: bool
) -> None:
    job, adapter = trained
    faulty = _faulty(adapter, tmp_path / "faulty.gguf", alpha_factor, transpose_square)
    with pytest.raises(ExportError, match="does not reproduce the trained adapter"):
        _check_exact(job, float_base, faulty)
    if alpha_factor == 2.0:  # a wrong scale also fails the train stage's own check, on the quantized base
        with pytest.raises(ExportError, match="does not reproduce the trained adapter"):
            _check(job, quantized_base, faulty)
