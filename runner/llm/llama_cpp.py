"""llama.cpp backend: the model's own chat template, JSON-schema grammars, and batched decoding.

``chat`` runs one request through llama-cpp-python's high-level ``Llama``. ``chat_many`` with
``llm.parallel > 1`` decodes up to ``parallel`` sequences together in a second, low-level context
that shares the same weights: each sequence has its own slot (``seq_id``), its own sampler chain
and grammar sampler and, when it finishes, its slot takes the next pending request while the
others keep decoding (continuous batching). A slot keeps the KV cells of the prompt prefix it
shares with its next request (e.g. the system prompt), so that prefix is not evaluated again.
With ``parallel == 1`` both methods use the high-level path.

Not thread-safe: use one instance from one thread.

One class in one file, though it is long: the high-level path and the batched decoder share one
loaded model, its vocabulary, chat formatter, grammar cache and statistics; split apart, each half
would reach into the other's state.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from runner.core.errors import ConfigError
from runner.core.models import without_default_system
from runner.llm.base import ChatRequest, ChatResponse

log = logging.getLogger(__name__)

# same truncation as llama-cpp-python's high-level sampler, so both paths sample alike
_TOP_K = 40
_MIN_P = 0.05


@dataclass
class _Prepared:
    """A request turned into what the decoder needs."""

    tokens: list[int]
    stop: list[str]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    grammar: Optional[str]


@dataclass
class _Job:
    position: int
    prep: _Prepared
    sampler: Any  # sampler chain without the grammar
    grammar: Any  # grammar sampler or None
    started: float
    fed: int = 0  # prompt tokens already in the KV cache
    pending: Optional[int] = None  # sampled token not yet decoded
    out_index: Optional[int] = None  # row of this job's logits in the current batch
    completion: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)


@dataclass
class _Slot:
    seq_id: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV cells this sequence holds
    job: Optional[_Job] = None


class _RequestError(Exception):
    """A request that cannot run; it becomes an error response."""


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# llama-cpp-python's JSON-schema converter lets a string hold raw control characters (its
# ``char ::= [^"\\]``); JSON forbids them, and a model that writes a newline inside a string then
# gives a reply no JSON parser reads. llama.cpp's own converter excludes them, as here.
_LOOSE_CHAR = r'char ::= [^"\\]'
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F]'


def strict_json_strings(grammar: str) -> str:
    """The grammar with JSON's rule for string characters (no raw control characters)."""
    return grammar.replace(_LOOSE_CHAR, _STRICT_CHAR)


def _find_stop(text: str, stops: Sequence[str]) -> int:
    """Index of the earliest stop string in ``text``, or -1."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else -1


class LlamaCppLLM:
    """In-process llama.cpp model (GGUF), optionally with a GGUF LoRA adapter.

    ``stats`` is cumulative: requests, errors, prompt_tokens (of which prompt_tokens_cached were
    reused from a slot's KV cache in the batched path), completion_tokens, and seconds spent
    generating, so callers can log tokens per second.
    """

    def __init__(
        self, model_path: Path | str, llm_cfg: Any, lora_path: Path | str | None = None, chat_format: str | None = None,
        default_system: bool = True,
    ):
        import llama_cpp

        self._lc = llama_cpp
        self.cfg = llm_cfg
        # plain values: read once per token, and OmegaConf attribute access is slow
        self.n_ctx = int(llm_cfg.n_ctx)
        self.n_batch = int(llm_cfg.n_batch)
        self._capacity = max(self.n_batch, int(llm_cfg.parallel))  # room for one token of every sequence
        self.max_tokens = int(llm_cfg.max_tokens)
        self.temperature = float(llm_cfg.temperature)
        self.top_p = float(llm_cfg.top_p)
        self.seed = int(llm_cfg.seed)
        self.model_path = Path(model_path)
        self.n_threads = int(llm_cfg.n_threads or os.cpu_count() or 1)
        self.parallel = int(llm_cfg.parallel)
        self.name = f"llama_cpp:{self.model_path.stem}" + (f"+lora:{Path(lora_path).stem}" if lora_path else "")
        # rope_freq_base is left at its default 0 so the GGUF's own value is used
        self._llama = llama_cpp.Llama(
            model_path=str(self.model_path),
            n_ctx=llm_cfg.n_ctx,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            n_batch=llm_cfg.n_batch,
            n_gpu_layers=llm_cfg.n_gpu_layers,
            seed=llm_cfg.seed,
            lora_path=str(lora_path) if lora_path else None,
            verbose=False,
        )
        self._vocab = self._llama._model.vocab
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._formatter, template_source = self._make_formatter(chat_format, default_system)
        self._pieces: dict[int, bytes] = {}
        self._grammars: dict[str, str] = {}
        self._candidates: Any = None  # reusable llama_token_data buffer over the whole vocabulary
        self._ctx: Any = None  # low-level batched context, made on first use
        self._batch: Any = None
        self._slots: list[_Slot] = []
        self._busy = False
        self.stats: dict[str, float] = {
            "prompt_tokens": 0,
            "prompt_tokens_cached": 0,
            "completion_tokens": 0,
            "seconds": 0.0,
            "requests": 0,
            "errors": 0,
        }
        log.info(
            "loaded %s (n_ctx %d, threads %d, parallel %d, chat template: %s)",
            self.model_path.name, llm_cfg.n_ctx, self.n_threads, self.parallel, template_source,
        )

    # ---- prompt preparation -------------------------------------------------------------

    def _make_formatter(self, chat_format: str | None, default_system: bool = True) -> tuple[Any, str]:
        """The chat formatter; ``default_system=False`` leaves out the system prompt a GGUF's template writes when
        the messages bring none (the eval asks the tuned model as it trained: runner/train/data.py)."""
        from llama_cpp import llama_chat_format

        if chat_format and chat_format not in ("gguf", "chat_template.default"):
            for candidate in (chat_format.replace("-", "_"), chat_format.replace("-", "")):
                formatter = getattr(llama_chat_format, f"format_{candidate}", None)
                if callable(formatter):
                    return formatter, f"chat_format={chat_format}"
            known = sorted(llama_chat_format.LlamaChatCompletionHandlerRegistry()._chat_handlers)
            raise ConfigError(f"model.chat_format={chat_format!r} is not a llama-cpp-python chat format (known: {', '.join(known)})")
        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            log.warning("%s has no chat template in its metadata; using chatml (set model.chat_format to choose)", self.model_path.name)
            return llama_chat_format.format_chatml, "chatml (fallback)"
        model = self._llama._model
        eos, bos = self._llama.token_eos(), self._llama.token_bos()
        if not default_system:
            template = without_default_system(template)
        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        return formatter, "gguf tokenizer.chat_template"

    def _grammar(self, schema: dict[str, Any]) -> str:
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = strict_json_strings(json_schema_to_gbnf(key))
        return self._grammars[key]

    def _prepare(self, request: ChatRequest) -> _Prepared:
        formatted = self._formatter(messages=request.messages)
        tokens = self._llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
        stops = list(request.stop)
        extra = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        stops += [s for s in extra if s and s not in stops]
        max_tokens = request.max_tokens if request.max_tokens > 0 else self.max_tokens
        limit = self.n_ctx - max_tokens
        if len(tokens) > limit:
            raise _RequestError(
                f"prompt of {len(tokens)} tokens exceeds context: n_ctx {self.n_ctx} - max_tokens {max_tokens} leaves {limit}"
            )
        temperature = self.temperature if request.temperature is None else request.temperature
        return _Prepared(
            tokens=tokens,
            stop=stops,
            max_tokens=max_tokens,
            temperature=max(float(temperature), 0.0),
            top_p=self.top_p,
            seed=int(self.seed if request.seed is None else request.seed),
            grammar=self._grammar(request.json_schema) if request.json_schema is not None else None,
        )

    @staticmethod
    def _describe(exc: Exception) -> str:
        """Error text for a failed request; unexpected failures are logged with their traceback."""
        if isinstance(exc, _RequestError):
            return str(exc)
        log.warning("llama.cpp request failed: %s: %s", type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return f"{type(exc).__name__}: {exc}"

    def _record(self, response: ChatResponse) -> ChatResponse:
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += response.prompt_tokens
        self.stats["completion_tokens"] += response.completion_tokens
        if not response.ok:
            self.stats["errors"] += 1
        return response

    # ---- one request: high-level path ---------------------------------------------------

    def chat(self, request: ChatRequest) -> ChatResponse:
        """One request through the high-level ``Llama`` (which reuses the previous prompt's prefix)."""
        from llama_cpp.llama_grammar import LlamaGrammar

        started = time.perf_counter()
        try:
            prep = self._prepare(request)
            out = self._llama.create_completion(
                prompt=prep.tokens,
                max_tokens=prep.max_tokens,
                temperature=prep.temperature,
                top_p=prep.top_p,
                top_k=_TOP_K,
                min_p=_MIN_P,
                repeat_penalty=1.0,
                stop=prep.stop or None,
                seed=prep.seed,
                grammar=LlamaGrammar.from_string(prep.grammar) if prep.grammar else None,
            )
            choice, usage = out["choices"][0], out["usage"]
            response = ChatResponse(
                text=choice["text"],
                prompt_tokens=usage["prompt_tokens"],
                completion_tokens=usage["completion_tokens"],
                finish_reason="length" if choice["finish_reason"] == "length" else "stop",
            )
        except Exception as exc:  # one bad request must not stop a stage
            response = ChatResponse("", finish_reason="error", error=self._describe(exc))
        response.seconds = time.perf_counter() - started
        self.stats["seconds"] += response.seconds
        return self._record(response)

    # ---- many requests: batched low-level path ------------------------------------------

    def chat_many(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ChatResponse]]:
        """Yield (position, response) as each request finishes; batched when ``parallel > 1``."""
        if not requests:
            return
        if self.parallel <= 1:
            for position, request in enumerate(requests):
                yield position, self.chat(request)
            return
        yield from self._chat_batched(requests)

    def _ensure_context(self) -> None:
        if self._ctx is not None:
            return
        from llama_cpp import _internals

        lc = self._lc
        # same settings as the high-level context (flash attention, KV types, rope from the GGUF),
        # so both paths compute alike; every sequence gets its own n_ctx cells (one KV stream each)
        params = type(self._llama.context_params).from_buffer_copy(self._llama.context_params)
        params.n_ctx = self.n_ctx * self.parallel
        params.n_batch = self._capacity
        params.n_ubatch = self._capacity
        params.n_seq_max = self.parallel
        params.kv_unified = False
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads
        params.no_perf = True
        self._ctx = _internals.LlamaContext(model=self._llama._model, params=params, verbose=False)
        ctx = self._ctx.ctx
        per_seq = lc.llama_n_ctx_seq(ctx)
        if per_seq < self.n_ctx:
            raise RuntimeError(f"batched context gives {per_seq} tokens per sequence, fewer than n_ctx {self.n_ctx}")
        adapter = getattr(self._llama, "_lora_adapter", None)
        if adapter is not None:
            adapters = (lc.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(self._llama.lora_scale)
            if lc.llama_set_adapters_lora(ctx, adapters, 1, scales):
                raise RuntimeError("failed to attach the LoRA adapter to the batched context")
        self._batch = lc.llama_batch_init(self._capacity, 0, 1)
        self._slots = [_Slot(seq_id=i) for i in range(self.parallel)]
        log.debug("batched context: %d sequences x %d tokens", self.parallel, per_seq)

    def _make_samplers(self, prep: _Prepared) -> tuple[Any, Any]:
        """The sampler chain (as the high-level path builds it, minus the grammar) and the grammar sampler."""
        lc = self._lc
        grammar = None
        if prep.grammar is not None:
            grammar = lc.llama_sampler_init_grammar(self._vocab, prep.grammar.encode("utf-8"), b"root")
            if not grammar:
                raise _RequestError("llama.cpp could not parse the JSON-schema grammar")
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if prep.temperature <= 0.0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        else:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(_TOP_K))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(prep.top_p, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_min_p(_MIN_P, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(prep.temperature))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(prep.seed & 0xFFFFFFFF))
        return chain, grammar

    def _apply(self, sampler: Any, logits: Any, grammar: Any = None) -> int:
        """Run ``grammar`` (if any) then ``sampler`` over the whole vocabulary; return the selected token."""
        import numpy as np

        lc = self._lc
        if self._candidates is None:
            dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
            self._candidates = np.empty(self._n_vocab, dtype=dtype)
            self._token_ids = np.arange(self._n_vocab, dtype=np.int32)
        candidates = self._candidates
        candidates["id"] = self._token_ids
        candidates["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        candidates["p"] = 0.0
        array = lc.llama_token_data_array(
            data=candidates.ctypes.data_as(lc.llama_token_data_p), size=self._n_vocab, selected=-1, sorted=False
        )
        if grammar is not None:
            lc.llama_sampler_apply(grammar, ctypes.byref(array))
        lc.llama_sampler_apply(sampler, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def _allowed(self, grammar: Any, token: int) -> bool:
        lc = self._lc
        single = (lc.llama_token_data * 1)(lc.llama_token_data(token, 1.0, 0.0))
        array = lc.llama_token_data_array(data=single, size=1, selected=-1, sorted=False)
        lc.llama_sampler_apply(grammar, ctypes.byref(array))
        return single[0].logit != float("-inf")

    def _sample(self, job: _Job, index: int) -> int:
        """Next token of ``job`` from row ``index`` of the last decode."""
        lc, ctx = self._lc, self._ctx.ctx
        if job.grammar is None:
            return lc.llama_sampler_sample(job.sampler, ctx, index)
        # Masking the whole vocabulary with the grammar costs ~8 ms a token here (more than a decode
        # step of a small model), so sample first and check only the chosen token, as llama-server
        # does; the full mask is applied only when the grammar rejects it. Greedy results are the same.
        logits = lc.llama_get_logits_ith(ctx, index)
        token = self._apply(job.sampler, logits)
        if not self._allowed(job.grammar, token):
            token = self._apply(job.sampler, logits, job.grammar)
        lc.llama_sampler_accept(job.grammar, token)
        lc.llama_sampler_accept(job.sampler, token)
        return token

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = self._lc.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lc.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def _start(self, slot: _Slot, position: int, prep: _Prepared) -> int:
        """Put a request into a free slot, keeping the KV cells of the prefix it shares; return that length."""
        lc, mem = self._lc, self._ctx.memory
        # at least one prompt token must be evaluated to get logits for the first sample
        keep = min(_common_prefix(slot.cached, prep.tokens), len(prep.tokens) - 1)
        if keep < len(slot.cached):
            if not lc.llama_memory_seq_rm(mem, slot.seq_id, keep, -1):
                lc.llama_memory_seq_rm(mem, slot.seq_id, -1, -1)
                keep = 0
            del slot.cached[keep:]
        sampler, grammar = self._make_samplers(prep)
        slot.job = _Job(position=position, prep=prep, sampler=sampler, grammar=grammar, started=time.perf_counter(), fed=keep)
        return keep

    def _free_samplers(self, job: _Job) -> None:
        self._lc.llama_sampler_free(job.sampler)
        if job.grammar is not None:
            self._lc.llama_sampler_free(job.grammar)

    def _release(self, slot: _Slot, clear: bool = False) -> None:
        if slot.job is not None:
            self._free_samplers(slot.job)
            slot.job = None
        if clear:
            self._lc.llama_memory_seq_rm(self._ctx.memory, slot.seq_id, -1, -1)
            slot.cached.clear()

    def _fill_batch(self, active: list[_Slot]) -> int:
        """Queue one token per decoding sequence, then as many prompt tokens as fit; return the count."""
        batch, capacity = self._batch, self._capacity
        n = 0

        def add(slot: _Slot, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = len(slot.cached)
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot.seq_id
            batch.logits[n] = logits
            slot.cached.append(token)
            n += 1

        for slot in active:
            job = slot.job
            if job.pending is not None:
                job.out_index = n
                add(slot, job.pending, True)
                job.pending = None
        for slot in active:
            job = slot.job
            remaining = len(job.prep.tokens) - job.fed
            if remaining <= 0 or n >= capacity:
                continue
            take = min(remaining, capacity - n)
            for token in job.prep.tokens[job.fed:job.fed + take]:
                add(slot, token, False)
            job.fed += take
            if job.fed == len(job.prep.tokens):
                batch.logits[n - 1] = True
                job.out_index = n - 1
        batch.n_tokens = n
        return n

    def _advance(self, slot: _Slot) -> Optional[ChatResponse]:
        """Sample this slot's next token; return its response when it has finished."""
        job = slot.job
        index, job.out_index = job.out_index, None
        token = self._sample(job, index)
        finish = None
        text = None
        if self._lc.llama_vocab_is_eog(self._vocab, token):
            finish = "stop"
        else:
            job.completion.append(token)
            job.text += self._piece(token)
            text = job.text.decode("utf-8", errors="ignore")
            cut = _find_stop(text, job.prep.stop) if job.prep.stop else -1
            if cut >= 0:
                finish, text = "stop", text[:cut]
            elif len(job.completion) >= job.prep.max_tokens:
                finish = "length"
            else:
                job.pending = token
        if finish is None:
            return None
        return ChatResponse(
            text=text if text is not None else job.text.decode("utf-8", errors="ignore"),
            prompt_tokens=len(job.prep.tokens),
            completion_tokens=len(job.completion),
            finish_reason=finish,
            seconds=time.perf_counter() - job.started,
        )

    def _chat_batched(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ChatResponse]]:
        if self._busy:
            raise RuntimeError("chat_many is already running on this LlamaCppLLM")
        self._ensure_context()
        self._busy = True
        queue = deque(enumerate(requests))
        ready: list[tuple[int, ChatResponse]] = []
        work_s = 0.0
        try:
            while queue or ready or any(slot.job for slot in self._slots):
                # responses are yielded outside the timed section: the caller's time is not ours
                while ready:
                    yield ready.pop(0)
                tick = time.perf_counter()
                for slot in self._slots:
                    while slot.job is None and queue:
                        position, request = queue.popleft()
                        try:
                            prep = self._prepare(request)
                            cached = self._start(slot, position, prep)
                            self.stats["prompt_tokens_cached"] += cached
                        except Exception as exc:
                            message = self._describe(exc)
                            ready.append((position, self._record(ChatResponse("", finish_reason="error", error=message))))
                active = [slot for slot in self._slots if slot.job is not None]
                if not active:
                    work_s += time.perf_counter() - tick
                    continue
                self._fill_batch(active)
                rc = self._lc.llama_decode(self._ctx.ctx, self._batch)
                if rc != 0:
                    # the sequences' cache state is now unknown: fail the requests in flight, keep the queue going
                    for slot in active:
                        job = slot.job
                        error = ChatResponse("", finish_reason="error", error=f"llama_decode failed with status {rc}",
                                             prompt_tokens=len(job.prep.tokens), seconds=time.perf_counter() - job.started)
                        ready.append((job.position, self._record(error)))
                        self._release(slot, clear=True)
                    work_s += time.perf_counter() - tick
                    continue
                for slot in active:
                    if slot.job.out_index is None:
                        continue
                    try:
                        response = self._advance(slot)
                    except Exception as exc:
                        response = ChatResponse("", finish_reason="error", error=self._describe(exc),
                                                seconds=time.perf_counter() - slot.job.started)
                        position = slot.job.position
                        self._release(slot, clear=True)
                        ready.append((position, self._record(response)))
                        continue
                    if response is not None:
                        ready.append((slot.job.position, self._record(response)))
                        # the finished sequence's cells stay until the next request trims them to the shared prefix
                        self._release(slot)
                work_s += time.perf_counter() - tick
        finally:
            for slot in self._slots:
                if slot.job is not None:
                    self._release(slot, clear=True)
            self.stats["seconds"] += work_s
            self._busy = False

    def close(self) -> None:
        """Free the batched context and the model."""
        if self._ctx is not None:
            for slot in self._slots:
                if slot.job is not None:
                    self._free_samplers(slot.job)
                    slot.job = None
            self._lc.llama_batch_free(self._batch)
            self._ctx.close()
            self._ctx = None
            self._batch = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None
