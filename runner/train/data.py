"""Training data for both backends: records to token ids, and batches of records of similar length.

Records are tokenized as mlx-lm's dataset classes do it (chat template, prompt masked), so both
backends train on the same tokens, except that a chat has no system prompt unless one is configured
(``model.system_prompt``): the template's default one is left out, in training as in the eval. A batch holds neighbours in length order, so it is
padded only up to its own longest record; every record is in some batch (the last one may be
smaller), so no record is left out of an epoch.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator, Optional

from runner.core.errors import ConfigError
from runner.core.jsonl import read_jsonl
from runner.core.models import without_default_system

# (token ids, index of the first token that is trained on)
Row = tuple[list[int], int]


def encode_record(record: dict[str, Any], tokenizer: Any, mask_prompt: bool, system_prompt: Optional[str] = None) -> Row:
    """(token ids, index of the first trained token) as mlx-lm's dataset classes build them, with one difference:
    the chat has ``system_prompt`` as its system turn, or none at all (not the chat template's default one)."""
    if "messages" in record or ("prompt" in record and "completion" in record):
        if "messages" in record:
            messages = record["messages"]
            add_generation_prompt = messages[-1].get("role") == "assistant"
        else:
            messages = [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["completion"]}]
            add_generation_prompt = True
        if system_prompt and messages[0].get("role") != "system":
            messages = [{"role": "system", "content": system_prompt}, *messages]
        template = _template(tokenizer)
        tokens = list(tokenizer.apply_chat_template(messages, chat_template=template, return_dict=False))
        if not mask_prompt:
            return tokens, 0
        prompt = tokenizer.apply_chat_template(messages[:-1], chat_template=template, add_generation_prompt=add_generation_prompt, return_dict=False)
        return tokens, len(prompt)
    if "text" in record:
        tokens = list(tokenizer.encode(record["text"]))
        if tokens[-1] != tokenizer.eos_token_id:
            tokens.append(tokenizer.eos_token_id)
        return tokens, 0
    raise ConfigError(f"dataset record has none of messages / prompt+completion / text: {sorted(record)}")


def _template(tokenizer: Any) -> Optional[str]:
    template = getattr(tokenizer, "chat_template", None)
    return without_default_system(template) if isinstance(template, str) else None


def load_rows(path: Path, tokenizer: Any, mask_prompt: bool, limit: Optional[int] = None, system_prompt: Optional[str] = None) -> list[Row]:
    """The records of one jsonl split, tokenized; [] when the file is absent."""
    if not path.is_file():
        return []
    records = read_jsonl(path)
    return [encode_record(r, tokenizer, mask_prompt, system_prompt) for r in records[:limit]]


def token_counts(rows: list[Row]) -> dict[str, float]:
    """Tokens of one epoch: all of them, and those trained on (after the masked prompt)."""
    return {"tokens_per_epoch": float(sum(len(t) for t, _ in rows)), "trained_tokens_per_epoch": float(sum(len(t) - o for t, o in rows))}


def length_batches(rows: list[Row], batch_size: int, max_len: int) -> list[list[int]]:
    """Row indices in batches of ``batch_size`` neighbours by length (the last batch may be smaller)."""
    order = sorted(range(len(rows)), key=lambda i: min(len(rows[i][0]), max_len))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def batch_stream(batches: list[list[int]], seed: int) -> Iterator[list[int]]:
    """The batches over and over, in a new random order every pass."""
    rng = random.Random(seed)
    while True:
        for j in rng.sample(range(len(batches)), len(batches)):
            yield batches[j]


def validation_batches(rows: list[Row], batch_size: int, max_len: int, limit: int, seed: int) -> list[list[int]]:
    """The same validation batches at every evaluation: ``limit`` of them (-1: all) in a seeded order."""
    batches = length_batches(rows, min(batch_size, len(rows)), max_len) if rows else []
    random.Random(seed).shuffle(batches)
    return batches if limit == -1 else batches[:limit]


def padded_width(rows: list[Row], max_len: int) -> int:
    """Width a batch of ``rows`` is padded to: its longest row, cut at ``max_len``."""
    return min(max(len(tokens) for tokens, _ in rows), max_len)
