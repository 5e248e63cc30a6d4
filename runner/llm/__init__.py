"""LLM backends selected by ``llm.backend``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.core.errors import ConfigError
from runner.llm.base import LLM, ChatRequest, ChatResponse


def create_llm(llm_cfg: Any, model_cfg: Any, root: Path, lora_path: Path | None = None, default_system: bool = True) -> LLM:
    """Build the configured backend; nothing is loaded before this is called. ``default_system=False``: no
    system prompt but the messages' own (llama_cpp; a server applies its own template)."""
    if llm_cfg.backend == "llama_cpp":
        from runner.llm.llama_cpp import LlamaCppLLM
        from runner.core.models import resolve_gguf

        path = resolve_gguf(model_cfg.gguf_path, root)
        try:
            return LlamaCppLLM(path, llm_cfg, lora_path=lora_path, chat_format=model_cfg.chat_format, default_system=default_system)
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            raise ConfigError(f"model.gguf_path={model_cfg.gguf_path!r}: llama.cpp cannot load {path} ({exc})") from None
    if llm_cfg.backend == "openai":
        from runner.llm.openai_compat import OpenAICompatLLM

        return OpenAICompatLLM(llm_cfg)
    raise ConfigError(f"llm.backend={llm_cfg.backend!r} is invalid: must be one of llama_cpp, openai")


__all__ = ["LLM", "ChatRequest", "ChatResponse", "create_llm"]
