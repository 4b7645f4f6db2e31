"""GGUF files (llama.cpp, Ollama): read their RoPE description, write an extended copy.

`inspect_gguf` reads the same description `inspect` gives for Hugging Face folders from GGUF metadata
(`{arch}.context_length`, `{arch}.rope.*`) and the `rope_freqs` / `rope_factors_*` tensors.
`extend_gguf` writes a copy with the metadata llama.cpp reads for the new scaling. The source is
never modified; the output is built in a temporary file beside the destination and renamed into
place once it reads back; tensor data is streamed from the source in chunks, never held in memory.

Where things live (everything below stays importable from `ropeconv.gguf_io`):

- `ropeconv.gguf_io` (here): the entry points `inspect_gguf` and `extend_gguf`.
- `ropeconv.gguf_io.read`: opening and validating a file (`open_gguf`, `GgufInfo`), the RoPE description
  (`spec_from_metadata`, `spec_from_gguf`, `GgufRopeSpec`, `fit_llama3`), `read_record`, and the
  architecture tables (`ROPE_FREQS_ARCHS`, `LONGROPE_ARCHS`, `YARN_BETA_ARCHS`, `NON_ROPE`).
- `ropeconv.gguf_io.plan`: planning a conversion (`plan_gguf`, `GgufPlan`, `supported_methods`): the
  llama.cpp rules below, per method.
- `ropeconv.gguf_io.write`: the output's path (`default_output`), the streamed copy (`write_stream`) and
  the checked, atomic write (`write_gguf`).

What llama.cpp reads, and how (its src/llama-model.cpp, llama-context.cpp, models/*.cpp and
ggml's rope kernel; the reason each rule below exists):

- `context_length` is the trained/served length (n_ctx_train, the default context);
  `rope.scaling.original_context_length` is L0 for YaRN's ramp and for LongRoPE's short/long
  switch (default: context_length). `rope.freq_base` defaults to 10000.
- `rope.scaling.type` (none / linear / yarn / longrope; absent means linear) and
  `rope.scaling.factor` (absent or 0 means 1). `rope.scale_linear` is an older spelling of factor.
- YaRN: ext_factor 1, ramp bounds floor/ceil-rounded (transformers' truncate=true) from
  beta_fast 32 / beta_slow 1, attention factor 0.1·ln(s) + 1 times `rope.scaling.attn_factor`
  (read for every architecture). The `yarn_beta_*` keys are read only by a few architectures.
- The frequency-factor tensors divide each pair's frequency: inv_j = b_j / ff_j. `rope_freqs`
  carries Llama 3 scaling (ff_j = b_j / llama3_j, as llama.cpp's converter computes it);
  `rope_factors_long` / `rope_factors_short` carry LongRoPE (ff = the ext factors), chosen by
  whether the context exceeds original_context_length; with them the factor key must stay absent.
- A tensor the architecture does not create fails the load ("wrong number of tensors"), so the
  tensor kinds are only written for the architectures listed in `ropeconv.gguf_io.read`.
- Dynamic NTK does not exist in llama.cpp.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from ropeconv.gguf_io.plan import GgufPlan, _diff_lines, plan_gguf, supported_methods
from ropeconv.gguf_io.read import (
    FACTORS_LONG,
    FACTORS_SHORT,
    HEADER_MIN,
    LONGROPE_ARCHS,
    NON_ROPE,
    RECORD_PREFIX,
    ROPE_FREQS,
    ROPE_FREQS_ARCHS,
    ROPE_TENSORS,
    SMALL_ARRAY,
    YARN_BETA_ARCHS,
    YARN_BETA_DEFAULT,
    FieldRef,
    GgufInfo,
    GgufRopeSpec,
    TensorRef,
    check_rope_arch,
    fit_llama3,
    open_gguf,
    read_record,
    spec_from_gguf,
    spec_from_metadata,
)
from ropeconv.gguf_io.write import CHUNK, _destination, default_output, write_gguf, write_stream
from ropeconv.methods import base_inv_freq
from ropeconv.plan import conversion_summary, conversion_view

__all__ = [
    "CHUNK", "FACTORS_LONG", "FACTORS_SHORT", "HEADER_MIN", "LONGROPE_ARCHS", "NON_ROPE", "RECORD_PREFIX",
    "ROPE_FREQS", "ROPE_FREQS_ARCHS", "ROPE_TENSORS", "SMALL_ARRAY", "YARN_BETA_ARCHS", "YARN_BETA_DEFAULT",
    "FieldRef", "GgufInfo", "GgufPlan", "GgufRopeSpec", "TensorRef",
    "check_rope_arch", "default_output", "extend_gguf", "fit_llama3", "inspect_gguf", "open_gguf", "plan_gguf",
    "read_record", "spec_from_gguf", "spec_from_metadata", "supported_methods", "write_gguf", "write_stream",
]


# ---------------------------------------------------------------------------------------------------------
# inspect


def inspect_gguf(path: str | Path, method: str | None = None, factor: Any = None, params: dict | None = None, *,
                 target_context: Any = None, original_context: int | None = None) -> dict:
    """Explain a GGUF file's RoPE setup; with `method`, what `extend_gguf` would write."""
    info = open_gguf(path)
    spec = spec_from_metadata(info.arch, info.kv, info.rope_tensors, original_context=original_context)
    base_inv = base_inv_freq(spec.theta, spec.rotary_dim)
    current_inv, _ = spec.inv_freq()
    dims = [{"pair": j, "inv_freq": cur, "wavelength": 2 * math.pi / cur,
             "wavelength_over_L0": (2 * math.pi / b) / spec.original_context, "current_scale": b / cur}
            for j, (b, cur) in enumerate(zip(base_inv, current_inv))]
    rope_tensors = {}
    for t in info.tensors:
        if t.name in ROPE_TENSORS:
            values = info.rope_tensors[t.name]
            rope_tensors[t.name] = {"type": t.type_name, "shape": list(t.shape), "min": min(values),
                                    "max": max(values), "values": values}
    result: dict = {
        "source": {"kind": "gguf", "path": str(info.path)},
        "spec": spec.to_dict(),
        "dimensions": dims,
        "buffers": [],
        "warnings": list(spec.warnings),
        "gguf": {
            "architecture": info.arch,
            "name": info.kv.get("general.name"),
            "version": info.version,
            "file_size": info.file_size,
            "tensor_count": len(info.tensors),
            "kv_count": len(info.types),
            "alignment": info.alignment,
            "endian": "little" if info.endian == "<" else "big",
            "rope_keys": {key: info.kv.get(key) for key in sorted(info.kv)
                          if key.startswith(f"{info.arch}.rope.") or key == f"{info.arch}.context_length"},
            "rope_tensors": rope_tensors,
            "ropeconv_record": read_record(info.kv),
            "llama_cpp_methods": supported_methods(info.arch),
        },
    }
    if method:
        plan = plan_gguf(info, method, factor=factor, target_context=target_context,
                         original_context=original_context, params=params, rebase=True)
        result["conversion"] = {**conversion_view(dims, base_inv, plan), "metadata_changes": plan.changes}
    return result


# ---------------------------------------------------------------------------------------------------------
# extend


def extend_gguf(path: str | Path, method: str, *, factor: Any = None, target_context: Any = None,
                original_context: int | None = None, params: dict | None = None, output: str | Path | None = None,
                force: bool = False, dry_run: bool = False, progress: Callable[[int], None] | None = None,
                rebase: bool = False) -> dict:
    """Write a copy of the GGUF file at `path` whose metadata extends its context with `method`.

    Returns a report (JSON-able). `progress(n)` is called with the number of tensor bytes copied.
    With dry_run nothing is written. Raises RopeconvError for bad input; nothing is written then.
    """
    info = open_gguf(path)
    plan = plan_gguf(info, method, factor=factor, target_context=target_context,
                     original_context=original_context, params=params, rebase=rebase)
    dest = _destination(info.path, output, method, plan.factor, force)
    kept = [t for t in info.tensors if t.name not in plan.drop_tensors]
    report = {
        "source": {"kind": "gguf", "path": str(info.path)},
        "output": str(dest),
        **conversion_summary(plan),
        "config_diff": _diff_lines(plan.changes),
        "metadata_changes": plan.changes,
        "tensors": {"copied": len(kept), "added": sorted(plan.add_tensors),
                    "removed": sorted(plan.drop_tensors - set(plan.add_tensors)),
                    "replaced": sorted(plan.drop_tensors & set(plan.add_tensors)),
                    "bytes_copied": sum(t.n_bytes for t in kept)},
        "buffers": {"mode": "rewrite", "found": [], "pickled_shards": [], "changed": []},
        "gguf": {"architecture": info.arch, "source_size": info.file_size},
        "warnings": plan.warnings,
        "dry_run": dry_run,
    }
    if dry_run:
        return report
    written = write_gguf(info, plan, dest, progress=progress)
    report["gguf"]["output_size"] = written
    return report
