"""GGUF files (llama.cpp, Ollama): reading their RoPE description and writing an extended copy.

This package is the file I/O; what a conversion writes (the keys and tensors per method) is the
GGUF format adapter, `ropeconv.formats.gguf`, whose `inspect_gguf` / `extend_gguf` are the entry
points. The source is never modified; the output is built in a temporary file beside the
destination and renamed into place once it reads back; tensor data is streamed from the source in
chunks, never held in memory.

Where things live (the names below are importable from `ropeconv.gguf_io`):

- `ropeconv.gguf_io.read`: opening and validating a file (`open_gguf`, `GgufInfo`), the RoPE description
  (`spec_from_metadata`, `spec_from_gguf`, `GgufRopeSpec`, `fit_llama3`) and the
  architecture tables (`ROPE_FREQS_ARCHS`, `LONGROPE_ARCHS`, `YARN_BETA_ARCHS`, `NON_ROPE`).
- `ropeconv.gguf_io.write`: the streamed copy (`write_stream`) and
  the checked, atomic write (`write_gguf`). The output's default path and destination rules are
  `ropeconv.output`'s (`default_gguf_output`, `gguf_destination`); the `ropeconv.*` keys are `ropeconv.record`'s.

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

from ropeconv.gguf_io.read import (
    FACTORS_LONG,
    FACTORS_SHORT,
    HEADER_MIN,
    LONGROPE_ARCHS,
    NON_ROPE,
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
    spec_from_gguf,
    spec_from_metadata,
)
from ropeconv.gguf_io.write import CHUNK, default_output, write_gguf, write_stream

__all__ = [
    "CHUNK", "FACTORS_LONG", "FACTORS_SHORT", "HEADER_MIN", "LONGROPE_ARCHS", "NON_ROPE",
    "ROPE_FREQS", "ROPE_FREQS_ARCHS", "ROPE_TENSORS", "SMALL_ARRAY", "YARN_BETA_ARCHS", "YARN_BETA_DEFAULT",
    "FieldRef", "GgufInfo", "GgufRopeSpec", "TensorRef",
    "check_rope_arch", "default_output", "fit_llama3", "open_gguf",
    "spec_from_gguf", "spec_from_metadata", "write_gguf", "write_stream",
]
