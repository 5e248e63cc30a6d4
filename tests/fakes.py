"""A scripted stand-in for an LLM backend, for pure-logic tests (parsing, curation, resuming).

Stage tests run the real model; this fake only answers where the model's wording would make
an assertion a coin toss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Union

from runner.llm.base import ChatRequest, ChatResponse

Reply = Union[str, ChatResponse]


class FakeLLM:
    """Answers each request with ``reply(request)``; records every request it was sent.

    ``chat_many`` yields in reverse order, so callers that assume input order are caught.
    """

    name = "fake"

    def __init__(self, reply: Callable[[ChatRequest], Reply]):
        self._reply = reply
        self.requests: list[ChatRequest] = []
        self.closed = False

    def chat(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        reply = self._reply(request)
        if isinstance(reply, ChatResponse):
            return reply
        return ChatResponse(reply, prompt_tokens=10, completion_tokens=max(1, len(reply.split())))

    def chat_many(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ChatResponse]]:
        responses = [self.chat(request) for request in requests]
        for position in reversed(range(len(requests))):
            yield position, responses[position]

    def close(self) -> None:
        self.closed = True


def last_user_message(request: ChatRequest) -> str:
    return next(m["content"] for m in reversed(request.messages) if m["role"] == "user")


def error_response(message: str = "HTTP 503") -> ChatResponse:
    return ChatResponse("", finish_reason="error", error=message)
