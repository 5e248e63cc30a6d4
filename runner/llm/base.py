"""One small interface for every LLM backend: chat completion, single and many."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol


@dataclass
class ChatRequest:
    """One chat completion. ``json_schema`` asks for constrained JSON where the backend can."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: Optional[float] = None  # None = the backend's configured value
    stop: list[str] = field(default_factory=list)
    json_schema: Optional[dict[str, Any]] = None
    seed: Optional[int] = None


@dataclass
class ChatResponse:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # stop | length | error
    error: Optional[str] = None  # set when the request failed after retries (timeout, HTTP error, context overflow)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class LLM(Protocol):
    """What stages need from a model backend."""

    name: str

    def chat(self, request: ChatRequest) -> ChatResponse: ...

    def chat_many(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ChatResponse]]:
        """Yield (position, response) as each request finishes, in any order."""
        ...

    def close(self) -> None: ...


def questions_schema(max_items: int) -> dict[str, Any]:
    """JSON schema for {"questions": [str, ...]}."""
    return {
        "type": "object",
        "properties": {
            "questions": {
                "type": "array",
                "items": {"type": "string", "minLength": 10, "maxLength": 200},
                "minItems": 1,
                "maxItems": max_items,
            }
        },
        "required": ["questions"],
    }
