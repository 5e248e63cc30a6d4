"""Which blocks and which linear layers get LoRA: one rule for both backends."""

from __future__ import annotations

from typing import Optional

from runner.core.errors import ConfigError


def match_targets(candidates: list[str], targets: list[str]) -> list[str]:
    """Candidates equal to a target or ending with ``.<target>`` (PEFT's rule); every target must match."""
    chosen: list[str] = []
    for target in targets:
        hits = [c for c in candidates if c == target or c.endswith("." + target)]
        if not hits:
            raise ConfigError(
                f"train.target_modules: {target!r} matches no linear layer in a block; available: {', '.join(sorted(candidates))}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def chosen_modules(linear_names: list[str], targets: Optional[list[str]]) -> list[str]:
    """The linear layers of a block to adapt: the named ones, or all of them."""
    return match_targets(linear_names, targets) if targets else list(linear_names)


def adapted_blocks(num_layers: int, total: int) -> range:
    """Indices of the blocks that get LoRA: the last ``num_layers`` (-1: all)."""
    if num_layers > total:
        raise ConfigError(f"train.num_layers={num_layers} is invalid: the model has {total} layers")
    return range(0 if num_layers == -1 else total - num_layers, total)
