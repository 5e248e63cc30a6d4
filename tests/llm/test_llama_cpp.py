"""Real-model tests of the llama.cpp backend with the embedded SmolLM2-135M (tiny max_tokens)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runner.llm.base import ChatRequest, ChatResponse, questions_schema
from runner.core.models import resolve_gguf
from runner.core.schema import LLMConfig

ROOT = Path(__file__).resolve().parents[2]

COUNT = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
EXCERPT = "The relay listens on TCP port 7460 for the Quillstream Protocol. The Admin API listens on port 7461 and is used by qsctl."
QUESTIONS = [
    {"role": "system", "content": "You write short exam questions. Reply with JSON only."},
    {"role": "user", "content": f"Text: {EXCERPT}\nWrite 2 short questions about the text as JSON."},
]


@pytest.fixture(scope="module")
def llm():
    pytest.importorskip("llama_cpp")
    from runner.llm.llama_cpp import LlamaCppLLM

    cfg = OmegaConf.structured(LLMConfig)
    cfg.parallel = 4
    cfg.temperature = 0.0
    cfg.max_tokens = 16
    cfg.n_threads = 1  # on a small shared machine one thread is faster than two fighting for cores
    model = LlamaCppLLM(resolve_gguf("embedded:smollm2", ROOT), cfg)
    yield model
    model.close()


def _check_questions(text: str) -> None:
    """The reply satisfies questions_schema(2)."""
    data = json.loads(text)
    assert set(data) == {"questions"}
    assert 1 <= len(data["questions"]) <= 2
    assert all(isinstance(q, str) and 10 <= len(q) <= 200 for q in data["questions"])


def test_chat_returns_text_and_token_counts(llm):
    before = llm.stats["completion_tokens"]
    response = llm.chat(ChatRequest(messages=COUNT, max_tokens=8))
    assert response.ok and response.text.startswith("1, 2")
    assert response.prompt_tokens > 10
    assert response.completion_tokens == 8 and response.finish_reason == "length"
    assert response.seconds > 0
    assert llm.stats["completion_tokens"] == before + 8


def test_json_schema_reply_matches_questions_schema(llm):
    # room for the longest reply the schema allows (2 strings of at most 200 characters): the greedy
    # reply differs between CPU builds (AVX2 vs AVX-512 kernels), and it must stop by the grammar
    request = ChatRequest(messages=QUESTIONS, max_tokens=256, json_schema=questions_schema(2))
    single = llm.chat(request)
    assert single.finish_reason == "stop", single.text
    _check_questions(single.text)
    (_, batched), = llm.chat_many([request])
    _check_questions(batched.text)


def test_chat_many_yields_each_position_once(llm):
    requests = [ChatRequest(messages=[{"role": "user", "content": f"Name a fruit number {i}."}], max_tokens=4 + i) for i in range(6)]
    positions = []
    for position, response in llm.chat_many(requests):
        assert isinstance(response, ChatResponse) and response.ok
        assert response.completion_tokens <= requests[position].max_tokens
        positions.append(position)
    assert sorted(positions) == list(range(6))  # more requests than slots: freed slots took the rest


def test_greedy_batched_matches_sequential(llm):
    # One sequence decodes identically in both paths. Decoded together, llama.cpp may differ in the
    # last bits of the logits (other batch shapes), which can flip a near-tie; short outputs here agree.
    requests = [
        ChatRequest(messages=COUNT, max_tokens=12),
        ChatRequest(messages=QUESTIONS, max_tokens=24, json_schema=questions_schema(2)),
        ChatRequest(messages=[{"role": "user", "content": "List three colors."}], max_tokens=12),
    ]
    sequential = [llm.chat(request).text for request in requests]
    assert [dict(llm.chat_many([r]))[0].text for r in requests] == sequential
    together = dict(llm.chat_many(requests))
    assert [together[i].text for i in range(len(requests))] == sequential


def test_overlong_prompt_is_an_error_response(llm):
    long = ChatRequest(messages=[{"role": "user", "content": "word " * 2500}], max_tokens=8)
    response = llm.chat(long)
    assert response.finish_reason == "error" and "exceeds context" in response.error
    results = dict(llm.chat_many([long, ChatRequest(messages=COUNT, max_tokens=4)]))
    assert results[0].finish_reason == "error" and "exceeds context" in results[0].error
    assert results[1].ok and results[1].text


def test_bad_request_fails_alone_in_a_batch(llm):
    bad = ChatRequest(messages=COUNT, max_tokens=4, json_schema={"type": "no-such-type"})
    results = dict(llm.chat_many([bad, ChatRequest(messages=COUNT, max_tokens=4)]))
    assert results[0].finish_reason == "error" and results[0].error
    assert results[1].ok


def test_stop_strings_stop(llm):
    request = ChatRequest(messages=COUNT, max_tokens=24, stop=[", 4"])
    for response in (llm.chat(request), dict(llm.chat_many([request]))[0]):
        assert response.text == "1, 2, 3"
        assert response.finish_reason == "stop" and response.completion_tokens < 24


def test_lora_adapter_applies_to_both_paths(llm, tmp_path):
    """A (random) GGUF LoRA adapter changes greedy output, in the batched context too."""
    gguf = pytest.importorskip("gguf")
    import numpy as np

    from runner.llm.llama_cpp import LlamaCppLLM

    adapter = tmp_path / "adapter.gguf"
    writer = gguf.GGUFWriter(str(adapter), arch="llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 8.0)
    rng = np.random.default_rng(0)
    for layer in range(4):  # numpy shapes are reversed GGUF shapes: A is (rank, n_in), B is (n_out, rank)
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_a", (rng.standard_normal((8, 576)) * 0.2).astype(np.float32))
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_b", (rng.standard_normal((576, 8)) * 0.2).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    request = ChatRequest(messages=COUNT, max_tokens=12)
    tuned = LlamaCppLLM(llm.model_path, llm.cfg, lora_path=adapter)
    try:
        single, batched = tuned.chat(request).text, dict(tuned.chat_many([request]))[0].text
    finally:
        tuned.close()
    assert single != llm.chat(request).text
    assert batched == single


def test_named_chat_format_and_unknown_name(llm):
    from runner.core.errors import ConfigError
    from runner.llm.llama_cpp import LlamaCppLLM

    # SmolLM2's own template is ChatML, so both render a system + user conversation alike
    chatml = LlamaCppLLM(llm.model_path, llm.cfg, chat_format="chatml")
    try:
        assert chatml._prepare(ChatRequest(messages=QUESTIONS, max_tokens=8)).tokens == llm._prepare(
            ChatRequest(messages=QUESTIONS, max_tokens=8)
        ).tokens
    finally:
        chatml.close()
    with pytest.raises(ConfigError, match="chat_format"):
        LlamaCppLLM(llm.model_path, llm.cfg, chat_format="no-such-format")


def test_without_the_default_system_prompt_a_chat_is_only_its_own_turns(llm):
    """The eval asks the tuned model as it trained: no system turn unless the messages bring one (SmolLM2's
    template writes "You are a helpful AI assistant named SmolLM ..." otherwise)."""
    from runner.llm.llama_cpp import LlamaCppLLM

    bare = LlamaCppLLM(llm.model_path, llm.cfg, default_system=False)
    try:
        ask = ChatRequest(messages=COUNT, max_tokens=8)
        with_default, without = llm._prepare(ask).tokens, bare._prepare(ask).tokens
        assert "SmolLM" in llm._llama.detokenize(with_default).decode() and "SmolLM" not in bare._llama.detokenize(without).decode()
        assert without == with_default[len(with_default) - len(without):] and len(with_default) - len(without) >= 15
        # a system turn the messages bring is kept as it was
        assert bare._prepare(ChatRequest(messages=QUESTIONS, max_tokens=8)).tokens == llm._prepare(ChatRequest(messages=QUESTIONS, max_tokens=8)).tokens
    finally:
        bare.close()
