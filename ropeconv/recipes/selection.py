"""Choosing which conversions a batch runs: `--only` names and `--shard I/N`."""

from __future__ import annotations

import re

from ropeconv.errors import RopeconvError, did_you_mean
from ropeconv.recipes.model import Conversion

def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4): shards count from 1."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise RopeconvError(f"--shard {text!r} is not I/N", "e.g. --shard 1/4 (shards count from 1)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise RopeconvError(f"--shard {text}: I must be between 1 and N", "e.g. --shard 1/4 … --shard 4/4")
    return index, count


def shard_of(name: str, names: list[str], count: int) -> int:
    """The shard (1-based) a conversion lands in: names sorted, dealt round-robin. Every name lands in
    exactly one shard, the shards differ in size by at most one, and the assignment depends only on
    the set of names (not on file order)."""
    return sorted(names).index(name) % count + 1


def select(conversions: list[Conversion], only: list[str] | None = None,
           shard: tuple[int, int] | None = None) -> list[Conversion]:
    names = [c.name for c in conversions]
    wanted = [n.strip() for item in (only or []) for n in item.split(",") if n.strip()]
    for name in wanted:
        if name not in names:
            raise RopeconvError(f"--only {name}: no conversion has that name{did_you_mean(name, names)}",
                                f"the names are: {', '.join(names)}")
    chosen = [c for c in conversions if not wanted or c.name in wanted]
    if shard is not None:
        chosen = [c for c in chosen if shard_of(c.name, names, shard[1]) == shard[0]]
    return chosen
