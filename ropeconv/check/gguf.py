"""Checks on a GGUF file's rope metadata: the llama.cpp rules `ropeconv check FILE.gguf` applies."""

from __future__ import annotations

import math
from pathlib import Path

from ropeconv.check.findings import Finding
from ropeconv import engines as eng
from ropeconv.launch import gguf_launch_lines


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
    served = meta.get("context_length")
    engines = _gguf_engines(served, spec.get("rope_type")) if spec else []
    launch = [line.to_dict() for line in gguf_launch_lines(served, str(path))] if spec and served else []
    return {"model_type": meta.get("arch"), "rope": rope if spec else None,
            "findings": [f.to_dict() for f in findings], "engines": engines, "launch": launch,
            "_findings": findings, "_spec": None}


def _gguf_engines(served: int | None, rope_type: str | None) -> list[dict]:
    """The engines that read a GGUF file itself (engine-table rows as `check` prints them): llama.cpp
    serves what the file says; Ollama runs llama.cpp at its own default num_ctx."""
    # the default suite does not run llama.cpp's loader (it is behind the llamacpp marker), nor Ollama
    intended = "as intended" + eng.NOT_RUN
    row = {"rope_type": rope_type, "inv_freq": intended, "attention_factor": intended, "run_by_suite": False}
    return [{**row, "engine": "llamacpp", "name": "llama.cpp", "context": served,
             "notes": ["llama-server's default -c 0 serves the file's context_length"]},
            {**row, "engine": "ollama", "name": "Ollama", "context": None,
             "notes": [f"runs at its own default num_ctx, not the file's context_length ({served}), unless a "
                       "Modelfile sets PARAMETER num_ctx (the serve line below)"]}]


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
