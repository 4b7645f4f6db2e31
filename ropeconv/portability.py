"""Where each method goes, derived from the rows that decide it: the format adapters' method tables
(`formats.hf.HF_METHODS`, `formats.gguf.GGUF_METHODS`) and the engines' facts (`engines.ENGINES`).

Nothing here is written twice: the README's per-method table (`methods_markdown`, written by
scripts/engine_rules_table.py) and `check`'s portability facts read these rows. The GGUF adapter is
imported only when asked for (`gguf` is optional and heavy), so importing this module stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

from ropeconv.engines import ENGINES
from ropeconv.formats.hf import HF_METHODS, HfMethod
from ropeconv.methods import CONVERTIBLE


@dataclass(frozen=True)
class Portability:
    """One method: how config.json carries it, how a GGUF file carries it, what each engine makes of it."""

    method: str
    config_json: str
    gguf: str
    # engine key -> honoured / static / dropped / refused / unknown, for the rope type ropeconv writes (an NTK
    # output is plain RoPE with a larger θ: "default")
    engines: dict[str, str]


def config_json_how(row: HfMethod) -> str:
    """What a Hugging Face folder's config.json holds for a method, in words."""
    entry = "rope_theta = θ·s^(d/(d−2)) only" if not row.states_l0 else f"rope_type {row.rope_type} + factor"
    most = "L0" if row.l0_in_max else "L0·s"
    if row.family_may_scale_max:
        most += " (L0·s where the family publishes the scaled length)"
    where = ("the entry and top level" if row.original_at_top else "the entry" if row.original_in_entry else None)
    original = f"; original_max_position_embeddings L0 in {where}" if where else ""
    return f"{entry}; max_position_embeddings {most}{original}"


def gguf_how(method: str) -> str:
    from ropeconv.formats.gguf import GGUF_METHODS

    row = GGUF_METHODS[method]
    if row.write is None:
        return f"refused: {row.missing}"
    if row.archs is not None:
        return f"{row.how} (architectures {', '.join(sorted(row.archs))}; refused elsewhere)"
    return row.how


def portability(method: str) -> Portability:
    row = HF_METHODS[method]
    return Portability(method=method, config_json=config_json_how(row), gguf=gguf_how(method),
                       engines={e.key: e.types.value[row.rope_type] for e in ENGINES})


def methods_markdown() -> str:
    """Every convertible method's portability as the README's table."""
    header = ["method", "config.json", "GGUF (llama.cpp)", *(e.name for e in ENGINES)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in CONVERTIBLE:
        row = portability(method)
        cells = [method, row.config_json, row.gguf, *(row.engines[e.key] for e in ENGINES)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
