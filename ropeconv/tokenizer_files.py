"""Tokenizer files every reader can load: transformers 5 saves `tokenizer_config.json` with class names
that transformers 4.x does not know (`TokenizersBackend`), and llama.cpp's converter, vLLM/SGLang
releases built on 4.x and every other 4.x reader then refuse the folder ("Tokenizer class
TokenizersBackend does not exist"). Both releases load the 4.x name for the same tokenizer.json, so
outputs carry that name. Pure: no transformers import.
"""

from __future__ import annotations

from pathlib import Path

TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_JSON = "tokenizer.json"

# transformers 5 class name → the name transformers 4.x (and 5.x) loads for the same files. Only for
# classes that read tokenizer.json alone, so the rename is exact where that file is present.
PORTABLE_CLASS = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def unknown_to_transformers4(tokenizer_config: dict | None) -> str | None:
    """The tokenizer class transformers 4.x cannot load (None when it can, or when none is named)."""
    name = (tokenizer_config or {}).get("tokenizer_class")
    return name if isinstance(name, str) and name in PORTABLE_CLASS else None


def portable_tokenizer_config(folder: Path, tokenizer_config: dict | None) -> dict | None:
    """`tokenizer_config` with its class renamed for transformers 4.x readers, or None when nothing needs
    to change (no such class, or no tokenizer.json for the 4.x class to read)."""
    name = unknown_to_transformers4(tokenizer_config)
    if name is None or not (folder / TOKENIZER_JSON).is_file():
        return None
    return {**tokenizer_config, "tokenizer_class": PORTABLE_CLASS[name]}
