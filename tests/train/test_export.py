"""The LoRA GGUF writer on synthetic adapters: names, shapes, alpha, llama's q/k row order, refusals.

Whether llama.cpp then computes what the trainer computed is tests/train/test_fidelity.py's question;
here the file itself is checked against what llama.cpp's convert_lora_to_gguf.py writes (it gave
identical tensors for these configs and for real SmolLM2 adapters when the writer replaced it).
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

from runner.train.export import ExportError, peft_adapter_to_gguf

RANK = 4
MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def _config(arch: str, heads: int = 4, kv_heads: int = 2, hidden: int = 64, layers: int = 2) -> dict:
    return {
        "architectures": [arch], "hidden_size": hidden, "intermediate_size": 96, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "num_hidden_layers": layers, "vocab_size": 128,
    }  # fmt: skip


def _shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(out, in) of each adapted linear layer."""
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    q, kv, hidden, ff = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim, config["hidden_size"], config["intermediate_size"]
    outs = {"q_proj": (q, hidden), "k_proj": (kv, hidden), "v_proj": (kv, hidden), "o_proj": (hidden, q)}
    outs |= {"gate_proj": (ff, hidden), "up_proj": (ff, hidden), "down_proj": (hidden, ff)}
    return {m: outs[m.split(".")[1]] for m in MODULES}


def _adapter(tmp_path: Path, config: dict, adapter_config: dict | None = None) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """A base folder (config only) and a PEFT adapter with random weights; returns (adapter, base, tensors)."""
    base, adapter = tmp_path / "base", tmp_path / "adapter"
    base.mkdir()
    adapter.mkdir()
    (base / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(config["num_hidden_layers"]):
        for module, (out, inp) in _shapes(config).items():
            prefix = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((RANK, inp)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((out, RANK)).astype(np.float32)
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": RANK, "lora_alpha": 8.0, **(adapter_config or {})}))
    return adapter, base, tensors


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    reader = gguf.GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    return fields, {t.name: np.array(t.data) for t in reader.tensors}


def _interleaved(rows: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's order of one projection's rows: in each head, row i of the first half, then row i of the second."""
    head_dim = rows.shape[0] // heads
    order = [h * head_dim + half * head_dim // 2 + i for h in range(heads) for i in range(head_dim // 2) for half in (0, 1)]
    return rows[order]


@pytest.mark.parametrize(("arch", "gguf_arch", "heads", "kv_heads"), [
    ("LlamaForCausalLM", "llama", 4, 2), ("MistralForCausalLM", "llama", 8, 2), ("Qwen2ForCausalLM", "qwen2", 4, 2),
])  # fmt: skip
def test_writes_what_llama_cpp_loads(tmp_path: Path, arch: str, gguf_arch: str, heads: int, kv_heads: int) -> None:
    config = _config(arch, heads, kv_heads)
    adapter, base, tensors = _adapter(tmp_path, config)
    out = tmp_path / "adapter.gguf"
    info = peft_adapter_to_gguf(adapter, base, out)
    fields, written = _read(out)

    assert info == {"architecture": gguf_arch, "alpha": 8.0, "tensors": 2 * len(MODULES) * 2}
    assert fields["general.architecture"] == gguf_arch and fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora" and fields["adapter.lora.alpha"] == 8.0
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
    names |= {"gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    for layer in range(2):
        for module in MODULES:
            prefix = f"base_model.model.model.layers.{layer}.{module}"
            a, b = tensors[f"{prefix}.lora_A.weight"], tensors[f"{prefix}.lora_B.weight"]
            name = f"blk.{layer}.{names[module.split('.')[1]]}.weight"
            np.testing.assert_array_equal(written[name + ".lora_a"], a)  # (rank, in): ggml's {in, rank}
            if gguf_arch == "llama" and module.endswith(("q_proj", "k_proj")):
                b = _interleaved(b, heads if module.endswith("q_proj") else kv_heads)
            np.testing.assert_array_equal(written[name + ".lora_b"], b)  # (out, rank)
    assert not list(tmp_path.glob(".adapter.gguf.tmp*")), "written to a temp name, then renamed"


def test_rslora_alpha_becomes_the_alpha_llama_cpp_divides_by_rank(tmp_path: Path) -> None:
    adapter, base, _ = _adapter(tmp_path, _config("LlamaForCausalLM"), {"use_rslora": True})
    info = peft_adapter_to_gguf(adapter, base, tmp_path / "adapter.gguf")
    assert info["alpha"] / RANK == pytest.approx(8.0 / RANK**0.5)  # rsLoRA scales by alpha / sqrt(r)


@pytest.mark.parametrize(("config", "adapter_config", "message"), [
    (_config("GPT2LMHeadModel"), {}, "cannot export a LoRA for 'GPT2LMHeadModel'.*supported are LlamaForCausalLM"),
    (_config("LlamaForCausalLM"), {"use_dora": True}, "only plain LoRA"),
    (_config("LlamaForCausalLM"), {"rank_pattern": {"q_proj": 8}}, "rank_pattern"),
])  # fmt: skip
def test_refuses_what_it_cannot_write_faithfully(tmp_path: Path, config: dict, adapter_config: dict, message: str) -> None:
    adapter, base, _ = _adapter(tmp_path, config, adapter_config)
    with pytest.raises(ExportError, match=message):
        peft_adapter_to_gguf(adapter, base, tmp_path / "adapter.gguf")
    assert not (tmp_path / "adapter.gguf").exists()


def test_refuses_tensors_that_are_not_lora_pairs(tmp_path: Path) -> None:
    adapter, base, tensors = _adapter(tmp_path, _config("LlamaForCausalLM"))
    tensors["base_model.model.model.embed_tokens.weight"] = np.zeros((128, 64), dtype=np.float32)  # modules_to_save
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(ExportError, match="embed_tokens"):
        peft_adapter_to_gguf(adapter, base, tmp_path / "adapter.gguf")
