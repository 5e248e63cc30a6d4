"""Training throughput: our train stage vs mlx-lm's own CLI, OpenBLAS vs mlx's bundled BLAS, all-layer LoRA.

    .venv/bin/python bench/bench_train.py [--iters N] [--reference-iters N] [--repeats R] [--no-peft]
                                          [--batch-iters N] [--torch-threads T]

All runs train SmolLM2-135M (converted once, cached under bench/results/.cache) on the
same 36 chat records with the same LoRA settings (2 layers, rank 8, scale 20, batch 1,
lr 1e-4, mask_prompt). Rates are what mlx-lm reports per training step time, averaged
over the reports after the first (which holds mx.compile's warm-up). Tokens/s counts
trained (unmasked) tokens, and mlx-lm's own loss counts one padding token per sequence
that ours leaves out (runner/train/mlx_backend.py), so the overhead of our loop is measured in
iterations/s. ``mlx_lm lora`` runs through its own ``main()`` with a reporting callback
added, because its console rounds rates to whole numbers. The stage and the CLI
alternate ``--repeats`` times; the best of each is compared.
Then LoRA on all 30 blocks and every linear layer at batch 8 (the ~60-token QA records), both
backends: tokens/s (trained and all input tokens) and the share of padding in the batches.
Results go to ``bench/results/train.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from the repository root
    sys.path.insert(0, str(ROOT))

from omegaconf import OmegaConf  # noqa: E402

from runner.core.jsonl import write_jsonl  # noqa: E402
from runner.core.schema import RunConfig  # noqa: E402
from runner.core.stage import StageContext  # noqa: E402
from runner.core.artifacts import PrepareModel  # noqa: E402
from runner.core.models import prepared_hf_dir  # noqa: E402
from runner.stages import prepare_model, train  # noqa: E402
from runner.train.blas import fast_blas_env, link_gfortran  # noqa: E402

log = logging.getLogger("bench.train")

PRODUCT = "Zephyrix Beacon"
FACTS = [
    ("port does the {p} listen on", "The {p} listens on TCP port 7311."),
    ("often does the {p} rotate its journal", "The {p} rotates its quasar journal every night at 02:00."),
    ("many fennel entries does the {p} lantern cache keep", "The lantern cache keeps at most 64 fennel entries."),
    ("company makes the {p}", "The {p} is made by Halvorsen Systems."),
    ("must you do before upgrading the {p}", "Drain every turnip queue and pause the marmalade scheduler first."),
    ("error does the {p} return after its license expires", "It returns error ZB-5083 after a 14-day grace period."),
    ("many nodes can a {p} community cluster have", "A community cluster of the {p} has at most 3 nodes."),
    ("is the default admin user of the {p}", "The default admin user of the {p} is called warden."),
    ("file holds the {p} settings", "The {p} reads its settings from /etc/zephyrix/beacon.toml."),
    ("color is the {p} status light when healthy", "The status light glows teal when the {p} is healthy."),
    ("much memory does the {p} need", "The {p} needs at least 2 GiB of memory."),
    ("command restarts the {p}", "Run zbctl restart --graceful to restart the {p}."),
]
OPENERS = ("What", "Tell me: what", "In the admin guide, what")

# the CLI, with one reporting callback added (printed as JSON lines on stderr)
_CLI_SHIM = """
import json, sys
import mlx_lm.lora as lora
from mlx_lm.tuner.callbacks import TrainingCallback

class Report(TrainingCallback):
    def on_train_loss_report(self, info):
        print("BENCH " + json.dumps({k: float(v) for k, v in info.items()}), file=sys.stderr, flush=True)

lora.get_reporting_callbacks = lambda *a, **k: Report()
sys.argv = ["mlx_lm.lora"] + sys.argv[1:]
lora.main()
"""


def _records() -> list[dict[str, Any]]:
    records = []
    for opener in OPENERS:
        for question, answer in FACTS:
            q = f"{opener} {question.format(p=PRODUCT)}?"
            records.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer.format(p=PRODUCT)}]})
    return records


def _prepare(cache: Path) -> tuple[Path, Path]:
    """(prepare_model stage dir, dataset dir), built once and reused across bench runs."""
    stage_dir, data_dir = cache / "prepare_model", cache / "dataset"
    if not (stage_dir / PrepareModel.INFO).is_file():
        stage_dir.mkdir(parents=True, exist_ok=True)
        cfg = _config([])
        result = prepare_model.run(cfg, StageContext("prepare_model", cfg, ROOT, stage_dir, {}))
        log.info("GGUF -> HF conversion: %.1f s", result.metrics["seconds"])
    data_dir.mkdir(parents=True, exist_ok=True)
    records = _records()
    write_jsonl(data_dir / "train.jsonl", records[:30])
    write_jsonl(data_dir / "valid.jsonl", records[30:])
    return stage_dir, data_dir


def _config(overrides: list[str]) -> Any:
    base = ["model.gguf_path=embedded:smollm2", "model.hf_path=null"]
    return OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.from_dotlist(base + overrides))


def _settings(iters: int, report: int, num_layers: int = 2, batch_size: int = 1) -> list[str]:
    return [
        f"train.iters={iters}",
        f"train.steps_per_report={report}",
        f"train.steps_per_eval={iters}",
        f"train.save_every={iters}",
        "train.val_batches=1",
        f"train.num_layers={num_layers}",
        "train.rank=8",
        "train.scale=20.0",
        f"train.batch_size={batch_size}",
        "train.learning_rate=1e-4",
        "train.max_seq_length=512",
        "train.mask_prompt=true",
        "train.export_check_records=0",  # throughput only
    ]


def _steady(rates: list[float]) -> float:
    """Mean tokens/s over the reports after the first (compile warm-up), or the only one."""
    rates = rates[1:] if len(rates) > 1 else rates
    return sum(rates) / len(rates) if rates else float("nan")


def run_stage(
    prepared: Path, data: Path, backend: str, fast_blas: bool, iters: int, report: int, extra: tuple[str, ...] = (), **shape: int
) -> dict[str, Any]:
    cfg = _config(_settings(iters, report, **shape) + [f"train.backend={backend}", f"train.fast_blas={str(fast_blas).lower()}", *extra])
    rates: list[float] = []
    input_rates: list[float] = []
    its: list[float] = []

    def log_metrics(metrics: dict[str, float], step: Any = None) -> None:
        if "train/tokens_per_second" in metrics:
            rates.append(metrics["train/tokens_per_second"])
            input_rates.append(metrics["train/input_tokens_per_second"])
            its.append(metrics["train/iterations_per_second"])

    with tempfile.TemporaryDirectory(prefix="bench-train-") as work:
        ctx = StageContext("train", cfg, ROOT, Path(work), {"dataset": data, "prepare_model": prepared}, log_metrics)
        started = time.perf_counter()
        result = train.run(cfg, ctx)
        wall = time.perf_counter() - started
    return {
        "iterations_per_second": round(_steady(its), 3),
        "tokens_per_second": round(_steady(rates), 2),
        "input_tokens_per_second": round(_steady(input_rates), 2),
        "padding_share": round(result.metrics.get("padding_share", float("nan")), 3),
        "reports": [round(r, 2) for r in rates],
        "wall_s": round(wall, 1),
        "train_s": round(result.metrics.get("train_seconds", float("nan")), 1),
        "blas": result.summary.get("blas"),
        "device": result.summary.get("device"),
        "val_loss_before": round(result.metrics["val/loss_before"], 4),
        "val_loss_after": round(result.metrics["val/loss_after"], 4),
    }


def run_cli(prepared: Path, data: Path, iters: int, report: int) -> dict[str, Any]:
    """``python -m mlx_lm lora`` (through its main()) with the same settings and the same OpenBLAS environment."""
    env = fast_blas_env()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as work:
        if env is not None:
            env = link_gfortran(env, Path(work))
        command = [
            sys.executable, "-c", _CLI_SHIM,
            "--model", str(prepared_hf_dir(prepared)), "--train", "--data", str(data),
            "--iters", str(iters), "--num-layers", "2", "--batch-size", "1", "--learning-rate", "1e-4",
            "--steps-per-report", str(report), "--steps-per-eval", str(iters), "--val-batches", "1",
            "--save-every", str(iters), "--max-seq-length", "512", "--mask-prompt", "--seed", "0",
            "--adapter-path", str(Path(work) / "adapters"),
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"mlx_lm lora failed:\n{done.stderr[-2000:]}")
    reports = [json.loads(line[6:]) for line in done.stderr.splitlines() if line.startswith("BENCH ")]
    rates = [r["tokens_per_second"] for r in reports]
    return {
        "iterations_per_second": round(_steady([r["iterations_per_second"] for r in reports]), 3),
        "tokens_per_second": round(_steady(rates), 2),
        "reports": [round(r, 2) for r in rates],
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30, help="iterations of the OpenBLAS / peft runs")
    parser.add_argument("--report", type=int, default=5, help="steps per report")
    parser.add_argument("--reference-iters", type=int, default=4, help="iterations with mlx's bundled BLAS (slow); 0 skips")
    parser.add_argument("--repeats", type=int, default=2, help="alternating stage / CLI pairs")
    parser.add_argument("--no-peft", action="store_true", help="skip the transformers + PEFT run")
    parser.add_argument("--batch-iters", type=int, default=8, help="iterations of the all-layer batch-8 runs; 0 skips")
    parser.add_argument("--torch-threads", type=int, default=None, help="train.num_threads for the PEFT runs (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    started = time.perf_counter()
    prepared, data = _prepare(ROOT / "bench" / "results" / ".cache")
    stage_runs, cli_runs = [], []
    for i in range(args.repeats):
        log.info("pair %d/%d: stage (mlx, OpenBLAS), then mlx_lm lora", i + 1, args.repeats)
        stage_runs.append(run_stage(prepared, data, "mlx", True, args.iters, args.report))
        cli_runs.append(run_cli(prepared, data, args.iters, args.report))
    best_stage = max(r["iterations_per_second"] for r in stage_runs)
    best_cli = max(r["iterations_per_second"] for r in cli_runs)
    overhead = (best_cli - best_stage) / best_cli * 100

    result: dict[str, Any] = {
        "benchmark": "train",
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 -> float32 HF)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": os.getloadavg()},
        "settings": {"iters": args.iters, "steps_per_report": args.report, "num_layers": 2, "rank": 8, "batch_size": 1, "mask_prompt": True},
        "stage_mlx_openblas": stage_runs,
        "cli_mlx_openblas": cli_runs,
        "wrapper_overhead_pct": round(overhead, 2),
        "wrapper_overhead_ok": overhead < 5.0,
    }
    if args.reference_iters:
        log.info("stage (mlx, bundled reference BLAS): %d iterations", args.reference_iters)
        reference = run_stage(prepared, data, "mlx", False, args.reference_iters, 2)
        result["stage_mlx_reference_blas"] = reference
        result["openblas_speedup"] = round(best_stage / reference["iterations_per_second"], 1)
    threads = (f"train.num_threads={args.torch_threads}",) if args.torch_threads else ()
    if not args.no_peft:
        log.info("stage (transformers + PEFT, torch)")
        result["stage_peft_torch"] = run_stage(prepared, data, "peft", True, args.iters, args.report, threads)
    if args.batch_iters:
        result["all_layers_batch8"] = {}
        for backend in ("mlx",) + (() if args.no_peft else ("peft",)):
            log.info("stage (%s), LoRA on every block and linear layer, batch 8", backend)
            run = run_stage(prepared, data, backend, True, args.batch_iters, 1, threads, num_layers=-1, batch_size=8)
            result["all_layers_batch8"][backend] = run
    result["machine"]["load_avg_end"] = os.getloadavg()
    result["total_s"] = round(time.perf_counter() - started, 1)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    rows = [(f"stage mlx + OpenBLAS #{i + 1}", s) for i, s in enumerate(stage_runs)]
    rows += [(f"mlx_lm lora + OpenBLAS #{i + 1}", c) for i, c in enumerate(cli_runs)]
    if "stage_mlx_reference_blas" in result:
        rows.append(("stage mlx + bundled BLAS", result["stage_mlx_reference_blas"]))
    if "stage_peft_torch" in result:
        rows.append((f"stage peft (torch {result['stage_peft_torch']['device']})", result["stage_peft_torch"]))
    for backend, run in result.get("all_layers_batch8", {}).items():
        rows.append((f"{backend}, all layers, batch 8", run))
    print(f"{'run':<34}{'it/s':>8}{'tokens/s':>10}{'input tok/s':>13}{'wall s':>9}")
    for label, r in rows:
        input_rate = r.get("input_tokens_per_second", float("nan"))
        print(f"{label:<34}{r['iterations_per_second']:>8.2f}{r['tokens_per_second']:>10.1f}{input_rate:>13.1f}{r['wall_s']:>9.1f}")
    print(f"our loop vs mlx_lm lora: {overhead:+.1f}% slower (best of {args.repeats}; must be < 5%)", end="")
    if "openblas_speedup" in result:
        print(f"; OpenBLAS speed-up {result['openblas_speedup']}x", end="")
    print(f"; {result['total_s']:.0f} s in all; written to {args.out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
