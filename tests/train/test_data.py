"""Training records to tokens: the chat as the eval asks it, with no system prompt unless one is configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.core.models import resolve_gguf, without_default_system
from runner.train.data import encode_record, token_counts

REPO_ROOT = Path(__file__).resolve().parents[2]
RECORD = {"messages": [{"role": "user", "content": "Which port does the relay listen on?"}, {"role": "assistant", "content": "Port 7460."}]}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    gguf = resolve_gguf("embedded:smollm2", REPO_ROOT)
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def test_the_template_loses_only_its_default_system_prompt(tokenizer) -> None:
    stripped = without_default_system(tokenizer.chat_template)
    assert "SmolLM" in tokenizer.chat_template and "SmolLM" not in stripped and "<|im_start|>" in stripped
    assert without_default_system("{% for m in messages %}{{ m['content'] }}{% endfor %}") == "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def test_a_record_trains_without_a_system_prompt_unless_one_is_configured(tokenizer) -> None:
    tokens, offset = encode_record(RECORD, tokenizer, mask_prompt=True)
    text = tokenizer.decode(tokens)
    assert text.startswith("<|im_start|>user\nWhich port") and "system" not in text
    assert tokenizer.decode(tokens[offset:]).startswith("Port 7460.")  # only the answer is trained
    with_system, system_offset = encode_record(RECORD, tokenizer, mask_prompt=True, system_prompt="You answer about Quillstream Relay.")
    assert tokenizer.decode(with_system).startswith("<|im_start|>system\nYou answer about Quillstream Relay.<|im_end|>")
    assert with_system[system_offset:] == tokens[offset:]
    counts = token_counts([(tokens, offset), (with_system, system_offset)])
    assert counts["tokens_per_epoch"] == len(tokens) + len(with_system)
    assert counts["trained_tokens_per_epoch"] == 2 * (len(tokens) - offset)
