"""The engine conformance harness: engines' own code run on ropeconv's outputs.

- `venvs`: engine environments from the package index, cached under ~/.cache/ropeconv-engines;
- `cases`: the family × method matrix, written by `ropeconv.api.extend`, and each method's meaning;
- `hf_runner`: runs inside a transformers environment, prints what its rotary modules compute;
- `transformers_engine`: runs the matrix through a transformers release and judges each case;
- `llamacpp`: llama.cpp's own convert_hf_to_gguf.py and the GGUF rope metadata it writes.
"""
