"""The text a probe measures on, and its tokens.

Three sources: `--text FILE` (any UTF-8 file), `--dataset NAME[:config[:split]]` (through the optional
`datasets` library), and the offline default: the source code of a fixed, sorted list of Python
standard-library modules, read from the running interpreter's own stdlib. That default exists on
every machine with Python, needs no network, is long enough for 128k tokens of most tokenizers,
and is deterministic for a given Python version (its sha256 is recorded with every result, so two
runs are comparable exactly when their fingerprints match).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from ropeconv.probe.options import ProbeOptionError
from ropeconv.redact import redact

# Plain-file modules present (as .py files) in CPython 3.10 through 3.14, in sorted order.
STDLIB_MODULES = (
    "argparse", "ast", "calendar", "configparser", "dataclasses", "difflib", "enum", "fractions",
    "ftplib", "functools", "gettext", "gzip", "heapq", "inspect", "ipaddress", "logging", "mailbox",
    "optparse", "pickle", "pickletools", "pprint", "pydoc", "shutil", "statistics", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "tokenize", "traceback", "typing",
)
DEFAULT_SPLIT = "test"
# Tokenize a prefix of this many characters per wanted token first (code runs ≈ 3–4 chars/token);
# grow it only when that was not enough.
CHARS_PER_TOKEN_GUESS = 6


@dataclass
class Text:
    content: str
    source: str  # "python-stdlib", "file" or "dataset"
    name: str  # what it is, in words a person can find again
    details: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8")).hexdigest()

    def describe(self) -> dict:
        return {"source": self.source, "name": self.name, "sha256": self.sha256,
                "chars": len(self.content), **self.details}


def stdlib_text() -> Text:
    """The default text: the listed stdlib modules' source, each behind a one-line header."""
    parts, used = [], []
    for module in STDLIB_MODULES:
        path = _module_file(module)
        if path is None:
            continue
        parts.append(f"# ===== {module}.py =====\n" + path.read_text(encoding="utf-8"))
        used.append(module)
    if not parts:
        raise ProbeOptionError("text", "this Python has no standard-library source files to use as the default text",
                               "pass {name} FILE (any long UTF-8 text)")
    import platform

    name = f"Python {platform.python_version()} standard-library source ({len(used)} modules)"
    return Text("\n".join(parts), "python-stdlib", name, {"modules": used})


def _module_file(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    origin = getattr(spec, "origin", None)
    if not origin or not origin.endswith(".py"):
        return None
    path = Path(origin)
    return path if path.is_file() else None


def text_file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a probe text, as a phrase after the path ("does not exist", "is not a
    file"), or None. The one rule for `--text` and a recipe's probe text: a device (/dev/zero), a fifo
    or a folder is "not a file" (reading one would never end, or fail), not "missing"."""
    try:
        if not path.exists():
            return "does not exist"
        if not path.is_file():
            return "is not a file (a folder, a device or a pipe)"
    except OSError as exc:  # e.g. a name longer than the file system allows
        return f"cannot be looked up ({exc.strerror or type(exc).__name__})"
    return None


def file_text(path: str | Path) -> Text:
    file = Path(path).expanduser()
    problem = text_file_problem(file)
    if problem is not None:
        raise ProbeOptionError("text", f"text file {file} {problem}", "pass an existing UTF-8 text file to {name}")
    try:
        content = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProbeOptionError("text", f"{file} is not UTF-8 text (bad byte at offset {exc.start})",
                               "convert it to UTF-8 or pass another {name} file") from None
    except OSError as exc:
        raise ProbeOptionError("text", f"cannot read {file}: {exc.strerror or exc}", "check the file") from None
    if not content.strip():
        raise ProbeOptionError("text", f"{file} is empty", "pass a long UTF-8 text file to {name}")
    return Text(content, "file", str(file))


def parse_dataset(spec: str) -> tuple[str, str | None, str]:
    """NAME[:config[:split]] -> (name, config, split)."""
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3:
        raise ProbeOptionError("dataset", f"{{name}} {redact(spec)!r} is not NAME[:config[:split]]",
                               "e.g. {name} emozilla/pg19-test or {name} wikitext:wikitext-103-raw-v1:test")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else DEFAULT_SPLIT
    return name, config, split


def dataset_text(spec: str, min_chars: int) -> Text:
    """The dataset's text rows joined (blank line between them) until there is `min_chars` of text."""
    name, config, split = parse_dataset(spec)
    if importlib.util.find_spec("datasets") is None:
        raise ProbeOptionError("dataset", "{name} needs the 'datasets' library",
                               "run: pip install datasets (or pip install 'ropeconv[datasets]'), or use {name:text} FILE")
    import datasets

    try:
        rows = datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as exc:  # network, unknown name, bad config: all one-line user errors
        # a dataset named by a URL may carry a password, and the loader's message may quote it
        raise ProbeOptionError("dataset", f"cannot load dataset {redact(spec)!r}: {redact(_first_line(exc))}",
                               "check the name, config and split (or use {name:text} FILE offline)") from None
    parts, size, column = [], 0, None
    for row in rows:
        column = column or next((k for k, v in row.items() if isinstance(v, str)), None)
        if column is None:
            raise ProbeOptionError("dataset", f"dataset {redact(spec)!r} has no text column",
                                   "pick a text dataset or use {name:text} FILE")
        parts.append(row[column])
        size += len(row[column])
        if size >= min_chars:
            break
    if not parts:
        raise ProbeOptionError("dataset", f"dataset {redact(spec)!r} split {split!r} is empty", "pick another split")
    return Text("\n\n".join(parts), "dataset", f"{name}:{config or ''}:{split}",
                {"column": column, "rows": len(parts)})


def load_text(text: str | Path | None = None, dataset: str | None = None, *, min_tokens: int = 0) -> Text:
    if text is not None and dataset is not None:
        raise ProbeOptionError("dataset", "{name:text} and {name} were both given", "pass only one of them")
    if text is not None:
        return file_text(text)
    if dataset is not None:
        return dataset_text(dataset, min_chars=min_tokens * CHARS_PER_TOKEN_GUESS)
    return stdlib_text()


def tokenize(tokenizer, text: Text, count: int) -> list[int]:
    """The first `count` tokens of the text (with the tokenizer's usual special tokens, e.g. BOS).

    Only a prefix is tokenized (most texts are far longer than needed); the prefix ends well past the
    last token kept, so the kept tokens are those of the whole text.
    """
    margin = 64  # tokens kept clear of the cut, where a word may be split differently
    chars = max(count + margin, 1024) * CHARS_PER_TOKEN_GUESS
    while True:
        prefix = text.content[:chars]
        ids = tokenizer(prefix, add_special_tokens=True, verbose=False)["input_ids"]
        whole = len(prefix) == len(text.content)
        if len(ids) >= count + margin or whole:
            break
        chars *= 2
    if len(ids) < count:
        raise ProbeOptionError("lengths", f"the text has {len(ids)} tokens, fewer than the {count} asked for",
                               "pass a longer {name:text} or lower {name}")
    return list(ids[:count])


def token_fingerprint(ids: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode("ascii")).hexdigest()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
