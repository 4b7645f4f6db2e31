"""The training text: files, a Hugging Face dataset, or the offline default — the Python standard
library's own source, without the modules the probe (and so the evaluation) reads. Tokenized once and
packed into one token array (documents joined by the tokenizer's end-of-sequence token)."""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ropeconv.errors import RopeconvError
from ropeconv.probe.text import STDLIB_MODULES, Text, dataset_text, file_text

CHARS_PER_TOKEN = 3  # a generous guess for code: the corpus is cut at this many chars per wanted token


@dataclass(frozen=True)
class Corpus:
    """The training text as read, described for the record."""

    texts: list[Text]
    source: str  # "python-stdlib", "file" or "dataset"

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(text.sha256.encode("ascii"))
        return digest.hexdigest()

    def describe(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "parts": len(self.texts),
                "chars": sum(len(t.content) for t in self.texts),
                "names": [t.name for t in self.texts[:20]] + (["…"] if len(self.texts) > 20 else [])}


def stdlib_training_files() -> list[Path]:
    """The standard library's top-level modules in name order, less those the probe measures on."""
    root = Path(sysconfig.get_paths()["stdlib"])
    held_out = set(STDLIB_MODULES)
    return [p for p in sorted(root.glob("*.py")) if p.stem not in held_out and not p.stem.startswith("_")]


def stdlib_corpus(chars: int) -> Corpus:
    texts, size = [], 0
    for path in stdlib_training_files():
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        texts.append(Text(content, "python-stdlib", path.name))
        size += len(content)
        if size >= chars:
            break
    if not texts:
        raise RopeconvError("this Python has no standard-library source files to train on",
                            "pass --text FILE (any long UTF-8 text)")
    return Corpus(texts, "python-stdlib")


def load_corpus(files: list[Path] | None, dataset: str | None, tokens: int) -> Corpus:
    if files and dataset:
        raise RopeconvError("--text and --dataset were both given", "pass only one of them")
    if files:
        return Corpus([file_text(f) for f in files], "file")
    if dataset:
        return Corpus([dataset_text(dataset, min_chars=tokens * CHARS_PER_TOKEN)], "dataset")
    return stdlib_corpus(tokens * CHARS_PER_TOKEN)


def pack(tokenizer, corpus: Corpus, limit: int):
    """The corpus as one int64 array of at most `limit` tokens: each text tokenized, EOS between texts."""
    import numpy as np

    eos = tokenizer.eos_token_id
    parts, total = [], 0
    for text in corpus.texts:
        ids = tokenizer(text.content[: limit * CHARS_PER_TOKEN * 2], add_special_tokens=True, verbose=False)["input_ids"]
        if eos is not None:
            ids = list(ids) + [eos]
        parts.append(np.asarray(ids, dtype=np.int64))
        total += len(ids)
        if total >= limit:
            break
    return np.concatenate(parts)[:limit] if parts else np.zeros(0, dtype=np.int64)
