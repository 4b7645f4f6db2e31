"""Checks on a GGUF file's rope metadata: the llama.cpp rules `ropeconv check FILE.gguf` applies."""

from __future__ import annotations

import math
from pathlib import Path

from ropeconv.check.findings import Finding


def check_gguf(path: Path) -> dict:
    """Checks on a GGUF file's rope metadata (what llama.cpp will read)."""
    from ropeconv.formats.gguf import inspect_gguf  # imported lazily: the gguf package is optional

    info = inspect_gguf(path)
    meta = _gguf_rope_keys(info)
    findings = gguf_findings(meta)
    spec = info.get("spec") or {}
    rope = {"rope_type": spec.get("rope_type"), "rope_theta": spec.get("rope_theta"),
            "rotary_dim": spec.get("rotary_dim"), "original_context": spec.get("original_context"),
            "max_position_embeddings": spec.get("max_position_embeddings"),
            "served_context": meta.get("context_length"), "gguf_keys": meta}
    return {"model_type": meta.get("arch"), "rope": rope if spec else None,
            "findings": [f.to_dict() for f in findings], "engines": [], "_findings": findings, "_spec": None}


def _gguf_rope_keys(info: dict) -> dict:
    """{short key: value} of the `{arch}.` rope keys `formats.gguf.inspect_gguf` reports, plus the arch."""
    gguf = info.get("gguf") or {}
    arch = gguf.get("architecture")
    out: dict = {"arch": arch}
    for key, value in (gguf.get("rope_keys") or {}).items():
        if arch and key.startswith(f"{arch}."):
            out[key[len(arch) + 1:]] = value
    return out


def gguf_findings(meta: dict) -> list[Finding]:
    """llama.cpp rules on GGUF rope keys (short names without the `{arch}.` prefix)."""
    arch = meta.get("arch") or "{arch}"
    out: list[Finding] = []
    kind = meta.get("rope.scaling.type")
    factor = meta.get("rope.scaling.factor")
    ctx_len = meta.get("context_length")
    orig = meta.get("rope.scaling.original_context_length")
    if kind == "yarn":
        if not orig:
            out.append(Finding("gguf-yarn-original", "error", f"{arch}.rope.scaling.original_context_length",
                               "YaRN without original_context_length: llama.cpp cannot place the ramp",
                               "set it to the trained context (convert again from a config that has "
                               "original_max_position_embeddings)", ["llama.cpp"]))
        elif factor and ctx_len and not math.isclose(ctx_len, orig * factor):
            out.append(Finding("gguf-yarn-context", "error", f"{arch}.context_length",
                               f"context_length {ctx_len} ≠ original_context_length {orig} × factor {factor:g}: "
                               "llama-server caps the context at context_length",
                               f"set context_length to {int(orig * factor)}", ["llama.cpp"]))
    if kind in ("linear", "yarn") and (not factor or factor <= 1):
        out.append(Finding("gguf-factor", "error", f"{arch}.rope.scaling.factor",
                           f"rope.scaling.type {kind} without a factor above 1", "set rope.scaling.factor",
                           ["llama.cpp"]))
    return out
