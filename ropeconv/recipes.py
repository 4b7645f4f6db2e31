"""Recipes: TOML files (usually in `recipes/`) that say which conversions to build, probe and push.

Why TOML: it is in the standard library (`tomllib`, Python 3.11+), so recipes add no dependency;
its values are typed (`factor = 4` is a number, `"4"` a string), it has comments, and it has no
YAML surprises (`no` meaning false, `1e3` a string, indentation errors). tomllib gives no
positions, so `key_lines()` scans the source text for where each key is written: every problem is
reported as `file:line: what is wrong — how to fix it`.

A file holds an optional `[defaults]` table and one `[[conversion]]` table per conversion:

    [defaults]                      # optional: every conversion in this file starts from these
    private = true

    [[conversion]]
    name = "qwen2.5-7b-instruct-yarn-x4"
    source = "Qwen/Qwen2.5-7B-Instruct"   # Hub repo[@revision], a local path, or "smollm2"
    method = "yarn"
    factor = 4.0                          # or target_context = 131072 (or "128k")
    original_context = 32768
    push_to = "your-org/Qwen2.5-7B-Instruct-YaRN-128k"

    [conversion.probe]                    # or `probe = true` for the probe's defaults
    lengths = "4k,64k,128k"

Keys are the options of `ropeconv extend` in snake_case (method, factor, target_context,
original_context, output, buffers, copy, force, rebase, probe, push_to, private, revision,
create_pr, and the method parameters beta_fast … long_factor); the probe table takes the options
of `ropeconv probe` (lengths, quick, passkey, depths, text, dataset, device, dtype,
max_short_ratio, max_beyond_ratio, min_passkey_accuracy). Relative paths (a local source, output,
a longrope factor file, a probe text file) are relative to the recipe file's folder.

`load_recipes()` validates everything before anything is downloaded or built and raises one
`RecipeError` listing every problem found, one line each.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # Python 3.11+
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10 (pip install tomli)
    import tomli as tomllib  # type: ignore[no-redef]

from ropeconv.errors import EXIT_BAD_INPUT, RopeconvError, did_you_mean
from ropeconv.methods import METHODS

SMOLLM2 = "smollm2"  # the special source: the SmolLM2-135M-Instruct demo folder (ropeconv.smollm)
SUFFIX = ".toml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
BUFFER_MODES = ("rewrite", "drop", "keep")  # as ropeconv.api.BUFFER_MODES (kept light: no api import)
LIST_PARAMS = ("short_factor", "long_factor")

# Method parameters: every method's, as `ropeconv extend` takes them.
METHOD_PARAMS: tuple[str, ...] = tuple(dict.fromkeys(p for m in METHODS.values() for p in m.params))

# key -> kind; kinds: str, bool, int, number, target, probe, params (checked per method)
CONVERSION_KEYS: dict[str, str] = {
    "name": "str", "source": "str", "method": "str", "factor": "number", "target_context": "target",
    "original_context": "int", "output": "str", "buffers": "str", "copy": "bool", "force": "bool",
    "rebase": "bool", "probe": "probe", "push_to": "str", "private": "bool", "revision": "str",
    "create_pr": "bool", **{p: "param" for p in METHOD_PARAMS},
}
PROBE_KEYS: dict[str, str] = {
    "lengths": "lengths", "quick": "bool", "passkey": "bool", "depths": "depths", "text": "str",
    "dataset": "str", "device": "str", "dtype": "str", "max_short_ratio": "number",
    "max_beyond_ratio": "number", "min_passkey_accuracy": "number",
}
TOP_KEYS = ("defaults", "conversion")
# Words people reach for, and the recipe key that means it.
ALIASES = {
    "branch": "revision", "repo": "push_to", "push": "push_to", "push_repo": "push_to", "destination": "push_to",
    "model": "source", "from": "source", "base": "source", "scaling": "method", "type": "method",
    "rope_type": "method", "target": "target_context", "context": "target_context",
    "max_position_embeddings": "target_context", "original_max_position_embeddings": "original_context",
    "out": "output", "output_dir": "output", "pr": "create_pr", "pull_request": "create_pr",
    "conversions": "conversion", "recipe": "conversion", "recipes": "conversion", "default": "defaults",
    "threshold": "max_beyond_ratio", "length": "lengths",
}
KIND_WORDS = {"str": "a string", "bool": "true or false", "int": "a whole number", "number": "a number"}


# -- problems ---------------------------------------------------------------------------------------

def display_path(path: Path) -> str:
    """`path` relative to the working folder when it is under it (what a person would type)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int  # 0: the file as a whole
    message: str

    def text(self) -> str:
        where = f"{display_path(self.file)}:{self.line}" if self.line else display_path(self.file)
        return f"{where}: {self.message}"

    def to_dict(self) -> dict:
        return {"file": display_path(self.file), "line": self.line, "message": self.message}


class RecipeError(RopeconvError):
    """Invalid recipes: every problem found, one line each (exit code 2, nothing was run)."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems), key=lambda p: (str(p.file), p.line, p.message))
        lines = [p.text() for p in self.problems]
        if len(lines) == 1:
            text = lines[0]
        else:
            text = f"{len(lines)} problems in the recipes (nothing was run):\n  " + "\n  ".join(lines)
        super().__init__(text, None, EXIT_BAD_INPUT)

    def to_dict(self) -> dict:
        return {"problems": [p.to_dict() for p in self.problems]}


def cli_words(text: str) -> str:
    """Library messages name CLI options (--factor, --no-truncate); a recipe names keys (factor)."""
    text = re.sub(r"\bpass --(rebase|force|copy)\b", r"set \1 = true", text)
    text = re.sub(r"\b(another|with) -o\b", r"\1 output", text)
    text = re.sub(r"pass --([a-z][a-z-]*) or --no-\1", lambda m: f"write {m.group(1).replace('-', '_')} = true "
                  "or false", text)
    text = re.sub(r"(e\.g\.|like) --([a-z][a-z-]*) (\d[\w.]*)",
                  lambda m: f"{m.group(1)} {m.group(2).replace('-', '_')} = {m.group(3)}", text)
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), text)


# -- where keys are written (tomllib gives no positions) --------------------------------------------

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_ARRAY_HEADER = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]")
_TABLE_HEADER = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_KEY_VALUE = re.compile(rf"^\s*({_DOTTED})\s*=")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_DOTTED})\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(_KEY, dotted)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def _value_state(text: str, depth: int, multiline: str | None) -> tuple[int, str | None]:
    """Scan a value's text: bracket depth and whether a multi-line string stays open at the end."""
    i, n = 0, len(text)
    while i < n:
        if multiline:
            end = text.find(multiline, i)
            if end < 0:
                return depth, multiline
            i, multiline = end + 3, None
            continue
        ch = text[i]
        if text.startswith('"""', i) or text.startswith("'''", i):
            multiline, i = text[i:i + 3], i + 3
        elif ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif ch == "'":
            end = text.find("'", i + 1)
            i = n if end < 0 else end + 1
        elif ch == "#":
            break
        else:
            depth += ch in "[{"
            depth -= ch in "]}"
            i += 1
    return max(depth, 0), multiline


def key_lines(text: str) -> dict[tuple, int]:
    """Where each key is written: {("conversion", 0, "probe", "lengths"): 12, ...}.

    Array-of-tables entries get their index; `[conversion.probe]` after the 2nd `[[conversion]]`
    maps to ("conversion", 1, "probe"). Keys inside inline tables get their line too. Lines inside
    multi-line strings and arrays are never mistaken for keys.
    """
    found: dict[tuple, int] = {}
    arrays: dict[tuple, int] = {}
    current: tuple = ()
    depth, multiline = 0, None

    def place(keys: tuple[str, ...]) -> tuple:
        out: list = []
        for key in keys:
            out.append(key)
            if tuple(out) in arrays:
                out.append(arrays[tuple(out)])
        return tuple(out)

    for number, line in enumerate(text.splitlines(), 1):
        if multiline or depth:
            depth, multiline = _value_state(line, depth, multiline)
            continue
        match = _ARRAY_HEADER.match(line)
        if match:
            path = place(_split_key(match.group(1))[:-1]) + (_split_key(match.group(1))[-1],)
            arrays[path] = arrays.get(path, -1) + 1
            current = path + (arrays[path],)
            found.setdefault(current, number)
            continue
        match = _TABLE_HEADER.match(line)
        if match:
            current = place(_split_key(match.group(1)))
            found.setdefault(current, number)
            continue
        match = _KEY_VALUE.match(line)
        if not match:
            continue
        path = current + _split_key(match.group(1))
        found.setdefault(path, number)
        rest = line[match.end():]
        if rest.lstrip().startswith("{"):
            for inner in _INLINE_KEY.finditer(rest):
                found.setdefault(path + _split_key(inner.group(1)), number)
        depth, multiline = _value_state(rest, 0, None)
    return found


def line_of(lines: dict[tuple, int], path: tuple) -> int:
    """The line of `path`, else of its nearest written parent, else 0."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return 0


# -- the validated form -----------------------------------------------------------------------------

@dataclass
class ProbeSettings:
    lengths: list[int] | None = None
    quick: bool = False
    passkey: bool = False
    depths: list[float] | None = None
    text: Path | None = None
    dataset: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_short_ratio: float | None = None
    max_beyond_ratio: float | None = None
    min_passkey_accuracy: float | None = None

    def thresholds(self):
        from ropeconv.probe.verdict import Thresholds

        return Thresholds.from_options(self.max_short_ratio, self.max_beyond_ratio, self.min_passkey_accuracy)

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        if self.text is not None:
            out["text"] = str(self.text)
        return out

    def describe(self) -> str:
        what = (f"lengths {','.join(str(n) for n in self.lengths)}" if self.lengths
                else "quick lengths (4k and L0 × 1.25)" if self.quick else "default lengths (4k, 2×L0, served)")
        t = self.thresholds()
        parts = [what, f"device {self.device}", f"short ×{t.max_short_ratio:g}", f"beyond ×{t.max_beyond_ratio:g}"]
        if self.passkey:
            parts.append("passkey" + (f" ≥ {t.min_passkey_accuracy:.0%}" if t.min_passkey_accuracy is not None else ""))
        return ", ".join(parts)


@dataclass
class Conversion:
    """One validated conversion of a recipe file."""

    name: str
    file: Path
    line: int
    base_dir: Path  # relative paths are relative to the recipe file's folder
    source: str  # as written
    source_kind: str  # "smollm2", "local" or "hub"
    method: str
    source_path: Path | None = None  # local sources
    repo_id: str | None = None  # Hub sources
    revision: str | None = None  # Hub sources: as written after '@' (None: main)
    factor: float | None = None
    target_context: int | None = None
    original_context: int | None = None
    params: dict = field(default_factory=dict)  # method parameters; longrope lists inlined
    output: Path | None = None  # None: <output dir>/<name>
    buffers: str = "rewrite"
    copy: bool = False
    force: bool = False
    rebase: bool = False
    probe: ProbeSettings | None = None
    push_to: str | None = None
    private: bool = False
    push_revision: str | None = None  # the `revision` key: the branch to push to
    create_pr: bool = False
    normalised: dict = field(default_factory=dict)
    sha256: str = ""
    lines: dict = field(default_factory=dict)  # key -> line, for errors found later

    @property
    def location(self) -> str:
        return f"{display_path(self.file)}:{self.line}"

    def where(self, key: str | None = None) -> str:
        return f"{display_path(self.file)}:{self.lines.get(key, self.line) if key else self.line}"

    def problem(self, key: str | None, message: str) -> Problem:
        return Problem(self.file, self.lines.get(key, self.line) if key else self.line, message)

    @property
    def source_spec(self) -> str:
        """What `ropeconv extend` is given (before a Hub revision is pinned to its sha)."""
        if self.source_kind == "hub":
            return f"{self.repo_id}@{self.revision}" if self.revision else str(self.repo_id)
        return str(self.source_path) if self.source_path else self.source

    def scale_text(self) -> str:
        over = f" over {self.original_context}" if self.original_context else ""
        rebase = " (rebase)" if self.rebase else ""
        if self.factor is not None:
            served = f" → {int(round(self.factor * self.original_context))}" if self.original_context else ""
            return f"{self.method} ×{self.factor:g}{over}{served}{rebase}"
        return f"{self.method} to {self.target_context}{over}{rebase}"

    def output_for(self, output_dir: Path) -> Path:
        return self.output if self.output is not None else output_dir / self.name

    def summary(self) -> dict:
        """The flat description `--list --json` gives (a CI matrix entry)."""
        return {"name": self.name, "file": display_path(self.file), "line": self.line, "source": self.source,
                "method": self.method, "factor": self.factor, "target_context": self.target_context,
                "original_context": self.original_context,
                "output": str(self.output) if self.output is not None else None,
                "probe": self.probe is not None, "push_to": self.push_to, "create_pr": self.create_pr,
                "recipe_sha256": self.sha256}


# -- loading ----------------------------------------------------------------------------------------

def find_recipe_files(paths: list[str | Path]) -> list[Path]:
    """The recipe files PATHS name: files as given, folders searched for *.toml (hidden folders skipped)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob(f"*{SUFFIX}")
                           if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise RopeconvError(f"no *{SUFFIX} recipe files in {path}",
                                    "add one (see the README's 'Recipes and CI'), or pass the recipe files")
            files += found
        elif path.is_file():
            if path.suffix != SUFFIX:
                raise RopeconvError(f"{path} is not a {SUFFIX} file: recipes are TOML",
                                    f"rename it to *{SUFFIX} (YAML is not read)")
            files.append(path)
        else:
            raise RopeconvError(f"{path} does not exist", "pass recipe files or folders (default: recipes/)")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return [Path(p) for p in unique]


def load_recipes(paths: list[str | Path]) -> list[Conversion]:
    """Read and validate every conversion in PATHS (sorted by name). Raises RecipeError listing
    every problem found; touches neither the network nor any model."""
    problems: list[Problem] = []
    conversions: list[Conversion] = []
    for file in find_recipe_files(paths):
        conversions += _load_file(file, problems)
    seen: dict[str, Conversion] = {}
    for conv in conversions:
        if conv.name in seen:
            first = seen[conv.name]
            problems.append(conv.problem("name", f"conversion name '{conv.name}' is already used at "
                                                 f"{first.location} — names must be unique across all recipes"))
        else:
            seen[conv.name] = conv
    targets: dict[tuple, Conversion] = {}
    for conv in conversions:  # each pushed repo's ropeconv.json records one conversion's build
        if conv.push_to is None:
            continue
        target = (conv.push_to.lower(), conv.push_revision or "main")
        if target in targets and targets[target].name != conv.name:
            first = targets[target]
            problems.append(conv.problem("push_to", f"'{conv.name}' pushes to {conv.push_to}@{target[1]}, as "
                                                    f"'{first.name}' does ({first.where('push_to')}) — give each "
                                                    "conversion its own repo or branch"))
        targets.setdefault(target, conv)
    if problems:
        raise RecipeError(problems)
    return sorted(conversions, key=lambda c: c.name)


def _load_file(file: Path, problems: list[Problem]) -> list[Conversion]:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(file, 0, f"not UTF-8 text (bad byte at offset {exc.start}) — save it as UTF-8"))
        return []
    except OSError as exc:
        problems.append(Problem(file, 0, f"cannot read it: {exc.strerror or exc}"))
        return []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line = int(match.group(1)) if match else 0
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", message) or "syntax error"
        column = f", column {match.group(2)}" if match else ""
        problems.append(Problem(file, line, f"invalid TOML{column}: {detail} — see https://toml.io"))
        return []
    lines = key_lines(text)
    for key in data:
        if key not in TOP_KEYS:
            problems.append(Problem(file, line_of(lines, (key,)),
                                    _unknown(key, TOP_KEYS, "at the top of a recipe file") +
                                    " — put conversions in [[conversion]] tables and shared keys in [defaults]"))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        problems.append(Problem(file, line_of(lines, ("defaults",)), "defaults must be a table: [defaults]"))
        defaults = {}
    for key in defaults:
        if key not in CONVERSION_KEYS:
            problems.append(Problem(file, line_of(lines, ("defaults", key)), _unknown(key, CONVERSION_KEYS, "in [defaults]")))
    if "name" in defaults:
        problems.append(Problem(file, line_of(lines, ("defaults", "name")),
                                "defaults cannot hold a name — each conversion names itself"))
    entries = data.get("conversion")
    if entries is None:
        problems.append(Problem(file, 0, "no [[conversion]] tables — add one per conversion (see recipes/ examples)"))
        return []
    if isinstance(entries, dict):
        problems.append(Problem(file, line_of(lines, ("conversion",)),
                                "write [[conversion]] (double brackets) for each conversion, not [conversion]"))
        return []
    out = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(Problem(file, line_of(lines, ("conversion",)),
                                    "conversion must be a list of tables: write [[conversion]] sections"))
            continue
        conv = _conversion(file, index, defaults, entry, lines, problems)
        if conv is not None:
            out.append(conv)
    return out


def _unknown(key: str, choices, where: str) -> str:
    if key.replace("-", "_") in choices:
        return f"unknown key '{key}' {where} (did you mean '{key.replace('-', '_')}'? recipe keys use underscores)"
    if key == "token":
        return "a Hub token never goes in a recipe (set HF_TOKEN, e.g. from CI secrets)"
    alias = ALIASES.get(key.lower())
    hint = f" (did you mean '{alias}'?)" if alias in choices else did_you_mean(key, choices)
    return f"unknown key '{key}' {where}{hint}"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"{value!r}"
    return f"a {type(value).__name__}"


def _is(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise ValueError(kind)


def parse_target_context(value: Any) -> int | None:
    """32768, "32768" or "32k" -> 32768 (None when not a whole number of tokens)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value > 0 else None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([kK]?)\s*", value)
        if match:
            number = int(match.group(1)) * (1024 if match.group(2) else 1)
            return number if number > 0 else None
    return None


class _Checker:
    """Validates one merged conversion, recording problems at the lines their keys are written."""

    def __init__(self, file: Path, index: int, lines: dict, origin: dict, problems: list[Problem]):
        self.file, self.index, self.lines, self.origin = file, index, lines, origin
        self.problems = problems
        self.count = 0

    def line(self, *key: str) -> int:
        path = self.origin.get(key, ("conversion", self.index) + key)
        return line_of(self.lines, path) or line_of(self.lines, ("conversion", self.index))

    def add(self, key: tuple[str, ...] | str | None, message: str) -> None:
        key = (key,) if isinstance(key, str) else (key or ())
        self.problems.append(Problem(self.file, self.line(*key), message))
        self.count += 1

    def typed(self, key: tuple[str, ...] | str, value: Any, kind: str) -> bool:
        if _is(kind, value):
            return True
        name = key if isinstance(key, str) else ".".join(key)
        self.add(key, f"{name} must be {KIND_WORDS[kind]}, not {_describe(value)}")
        return False


def _conversion(file: Path, index: int, defaults: dict, entry: dict, lines: dict,
                problems: list[Problem]) -> Conversion | None:
    merged, origin = _merge(defaults, entry, index)
    check = _Checker(file, index, lines, origin, problems)
    base_dir = file.parent
    where_name = f"in conversion '{entry.get('name')}'" if isinstance(entry.get("name"), str) else "in a conversion"

    for key in entry:  # [defaults] keys are checked once, with the file
        if key not in CONVERSION_KEYS:
            check.add(key, _unknown(key, CONVERSION_KEYS, where_name))
    if any(key not in CONVERSION_KEYS for key in defaults):
        check.count += 1  # no Conversion from a file with a bad [defaults]

    name = merged.get("name")
    if name is None:
        check.add(None, 'this conversion has no name — add name = "…" (letters, digits, . _ -)')
    elif check.typed("name", name, "str") and not NAME_RE.match(name):
        check.add("name", f"name {json.dumps(name)} must start with a letter or digit and use only letters, "
                          "digits, '.', '_' and '-' (it names the output folder and the CI job)")

    source = _source(merged, check, base_dir)
    method = merged.get("method")
    if method is None:
        check.add(None, "no method — add method = \"yarn\" (or linear, ntk, dynamic, llama3, longrope)")
    elif check.typed("method", method, "str"):
        from ropeconv.methods import get_method

        try:
            get_method(method)
        except RopeconvError as exc:
            check.add("method", exc.line())
            method = None
    else:
        method = None

    factor, target, original = _scale(merged, check)
    params = _params(merged, check, method, base_dir)

    buffers = merged.get("buffers", "rewrite")
    if check.typed("buffers", buffers, "str") and buffers not in BUFFER_MODES:
        check.add("buffers", f"buffers {json.dumps(buffers)} is not one of {', '.join(BUFFER_MODES)}"
                             f"{did_you_mean(buffers, BUFFER_MODES)}")
    flags = {}
    for key in ("copy", "force", "rebase", "private", "create_pr"):
        flags[key] = merged.get(key, False)
        if not check.typed(key, flags[key], "bool"):
            flags[key] = False

    output = merged.get("output")
    output_path = None
    if output is not None and check.typed("output", output, "str"):
        if not output.strip():
            check.add("output", "output is empty — name a folder, or leave output out for <output dir>/<name>")
        else:
            output_path = _path(base_dir, output)

    probe = _probe(merged.get("probe"), check, base_dir)
    push_to, push_revision = _push(merged, check, flags)

    if check.count or name is None or method is None or source is None:
        return None
    normalised = {
        "name": name, "source": merged["source"], "method": method, "factor": factor, "target_context": target,
        "original_context": original, "params": params, "output": output, "buffers": buffers,
        "rebase": flags["rebase"], "probe": _probe_fingerprint(probe),
        "push": {"push_to": push_to, "private": flags["private"], "revision": push_revision,
                 "create_pr": flags["create_pr"]} if push_to else None,
    }
    conv = Conversion(
        name=name, file=file, line=line_of(lines, ("conversion", index)), base_dir=base_dir,
        source=merged["source"], source_kind=source[0], source_path=source[1], repo_id=source[2],
        revision=source[3], method=method, factor=factor, target_context=target, original_context=original,
        params=params, output=output_path, buffers=buffers, copy=flags["copy"], force=flags["force"],
        rebase=flags["rebase"], probe=probe, push_to=push_to, private=flags["private"],
        push_revision=push_revision, create_pr=flags["create_pr"], normalised=normalised,
        sha256=recipe_hash(normalised),
        lines={key: check.line(key) for key in merged})
    return conv


def _merge(defaults: dict, entry: dict, index: int) -> tuple[dict, dict]:
    """defaults overlaid by the conversion's own keys (the probe table merges key by key), and where
    each key came from (a key path for key_lines)."""
    merged: dict = {}
    origin: dict = {}
    for source, prefix in ((defaults, ("defaults",)), (entry, ("conversion", index))):
        for key, value in source.items():
            if key == "probe" and isinstance(merged.get("probe"), dict) and (isinstance(value, dict) or value is True):
                merged["probe"] = {**merged["probe"], **(value if isinstance(value, dict) else {})}
            else:
                merged[key] = dict(value) if isinstance(value, dict) else value
            origin[(key,)] = prefix + (key,)
            if isinstance(value, dict):
                for sub in value:
                    origin[(key, sub)] = prefix + (key, sub)
    return merged, origin


def _path(base_dir: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base_dir / path


def _source(merged: dict, check: _Checker, base_dir: Path) -> tuple | None:
    """(kind, local path, repo id, revision) of the source."""
    source = merged.get("source")
    if source is None:
        check.add(None, 'no source — add source = "org/name" (Hub), "./folder" (local) or "smollm2"')
        return None
    if not check.typed("source", source, "str"):
        return None
    text = source.strip()
    if text.lower() == SMOLLM2:
        return ("smollm2", None, None, None)
    if not text:
        check.add("source", "source is empty")
        return None
    if text.endswith(".gguf"):
        check.add("source", "GGUF sources are not supported in recipes — use `ropeconv extend FILE.gguf`, "
                            "or the safetensors model it came from")
        return None
    local = text.startswith((".", "/", "~")) or _path(base_dir, text).exists()
    if local:
        return ("local", _path(base_dir, text), None, None)
    from ropeconv.hub import parse_model_spec

    try:
        repo_id, revision = parse_model_spec(text)
    except RopeconvError as exc:
        check.add("source", f"source {json.dumps(text)} is neither a local path (start it with ./), "
                            f"nor 'smollm2', nor a Hub repo: {exc.line()}")
        return None
    return ("hub", None, repo_id, revision)


def _scale(merged: dict, check: _Checker) -> tuple[float | None, int | None, int | None]:
    from ropeconv.plan import parse_factor

    factor, target, original = merged.get("factor"), merged.get("target_context"), merged.get("original_context")
    if factor is None and target is None:
        check.add(None, "give factor (e.g. factor = 4.0) or target_context (e.g. target_context = 131072)")
    if factor is not None and target is not None:
        check.add("target_context", "give factor or target_context, not both")
    factor_value = target_value = original_value = None
    if factor is not None and check.typed("factor", factor, "number"):
        try:
            factor_value = parse_factor(factor)
        except RopeconvError as exc:
            check.add("factor", cli_words(exc.line()))
    if target is not None:
        target_value = parse_target_context(target)
        if target_value is None:
            check.add("target_context", f"target_context must be a whole number of tokens (131072) or \"128k\", "
                                        f"not {_describe(target)}")
    if original is not None and check.typed("original_context", original, "int"):
        if original < 16:
            check.add("original_context", f"original_context {original} is not a plausible trained context — "
                                          "give the length the model was trained at, e.g. 8192")
        else:
            original_value = original
    if original_value and target_value and target_value <= original_value:
        check.add("target_context", f"target_context {target_value} is not longer than original_context "
                                    f"{original_value} — give a longer target")
    if original_value and factor_value:
        served = original_value * factor_value
        if abs(served - round(served)) > 1e-6:
            check.add("factor", f"factor {factor_value:g} × original_context {original_value} = {served:g} is not a "
                                "whole number of tokens — use target_context instead")
    return factor_value, target_value, original_value


def _params(merged: dict, check: _Checker, method: str | None, base_dir: Path) -> dict:
    """Method parameters, validated with the planner's own rules; longrope lists read and inlined."""
    given = {k: v for k, v in merged.items() if k in METHOD_PARAMS}
    before = check.count
    if method is None:
        return {}
    allowed = METHODS[method].params
    params: dict = {}
    for key, value in given.items():
        if key not in allowed:
            takes = ", ".join(allowed) or "no parameters besides the factor"
            check.add(key, f"'{key}' is not a parameter of {method} ({method} takes: {takes})")
            continue
        if key in LIST_PARAMS:
            numbers = _factor_list(key, value, check, base_dir)
            if numbers is not None:
                params[key] = numbers
        elif key == "truncate":
            if check.typed(key, value, "bool"):
                params[key] = value
        elif check.typed(key, value, "number"):
            params[key] = value
    if check.count > before:
        return params
    from types import SimpleNamespace

    from ropeconv.plan import normalise_params

    lists = [params[k] for k in LIST_PARAMS if k in params]
    stub = SimpleNamespace(rotary_dim=2 * len(lists[0]) if lists else 0)  # list lengths are checked per model
    try:
        return normalise_params(method, params, stub)
    except RopeconvError as exc:
        key = next((k for k in given if k in exc.problem), None) or "method"
        message = exc.line()
        if method == "longrope" and "needs both" in message:
            message = ("longrope needs both short_factor and long_factor — lists of numbers (rotary dims / 2 each) "
                       "or a JSON file holding them")
        check.add(key, cli_words(message))
        return params


def _factor_list(key: str, value: Any, check: _Checker, base_dir: Path) -> list | None:
    if isinstance(value, list):
        data = value
    elif isinstance(value, str):
        from ropeconv.cli.params import parse_factor_list

        text = value.strip()
        candidate = _path(base_dir, text)
        try:
            data = parse_factor_list(key, str(candidate) if candidate.is_file() else text)
        except RopeconvError as exc:
            if not candidate.is_file() and not re.match(r"^[\s\[\d.,eE+-]+\]?$", text):
                check.add(key, f"{key} file {display_path(candidate)} does not exist — give a JSON file (relative to "
                               "the recipe) or a list of numbers")
            else:
                check.add(key, cli_words(exc.line()))
            return None
    else:
        check.add(key, f"{key} must be a list of numbers or a JSON file name, not {_describe(value)}")
        return None
    if not isinstance(data, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             and math.isfinite(v) for v in data):
        check.add(key, f"{key} must hold only finite numbers")
        return None
    if not data or any(v <= 0 for v in data):
        check.add(key, f"{key} must be a non-empty list of positive numbers")
        return None
    return [float(v) for v in data]


def _probe(value: Any, check: _Checker, base_dir: Path) -> ProbeSettings | None:
    if value is None or value is False:
        return None
    if value is True:
        return ProbeSettings()
    if not isinstance(value, dict):
        check.add("probe", f"probe must be true, false or a table ([conversion.probe]), not {_describe(value)}")
        return None
    settings = ProbeSettings()
    for key, item in value.items():
        kind = PROBE_KEYS.get(key)
        where = ("probe", key)
        if kind is None:
            check.add(where, _unknown(key, PROBE_KEYS, "in the probe table"))
        elif kind == "lengths":
            from ropeconv.probe import parse_lengths

            if isinstance(item, bool) or not isinstance(item, (str, int, list)):
                check.add(where, f"probe lengths must be a string like \"4k,16k\" or a list, not {_describe(item)}")
                continue
            try:
                settings.lengths = parse_lengths(item)
            except RopeconvError as exc:
                check.add(where, "probe lengths: " + cli_words(exc.line()))
        elif kind == "depths":
            from ropeconv.probe.passkey import parse_depths

            if isinstance(item, bool) or not isinstance(item, (str, list)):
                check.add(where, f"probe depths must be a string like \"0.1,0.5\" or a list, not {_describe(item)}")
                continue
            try:
                settings.depths = list(parse_depths(item))
            except RopeconvError as exc:
                check.add(where, "probe depths: " + cli_words(exc.line()))
        elif check.typed(where, item, kind):
            if key == "text":
                path = _path(base_dir, item)
                if not path.is_file():
                    check.add(where, f"probe text file {display_path(path)} does not exist (paths are relative to "
                                     "the recipe file)")
                settings.text = path
            elif key == "device":
                from ropeconv.probe.measure import DEVICES

                if item not in DEVICES:
                    hint = " (did you mean 'cuda'?)" if item.lower() == "gpu" else did_you_mean(item, DEVICES)
                    check.add(where, f"probe device {json.dumps(item)} is not one of {', '.join(DEVICES)}{hint}")
                settings.device = item
            elif key == "dtype":
                from ropeconv.probe.measure import DTYPES

                if item not in DTYPES:
                    check.add(where, f"probe dtype {json.dumps(item)} is not one of {', '.join(DTYPES)}"
                                     f"{did_you_mean(item, DTYPES)}")
                settings.dtype = item
            else:
                setattr(settings, key, float(item) if kind == "number" else item)
    if settings.text is not None and settings.dataset is not None:
        check.add(("probe", "dataset"), "probe text and dataset were both given — keep one")
    if settings.depths is not None and not settings.passkey:
        check.add(("probe", "depths"), "probe depths only apply with passkey = true")
    if settings.min_passkey_accuracy is not None and not settings.passkey:
        check.add(("probe", "min_passkey_accuracy"), "min_passkey_accuracy only applies with passkey = true")
    if settings.lengths is not None and settings.quick:
        check.add(("probe", "quick"), "probe quick and lengths were both given — quick picks its own lengths")
    try:
        settings.thresholds()
    except RopeconvError as exc:
        bad = "min_passkey_accuracy" if "passkey" in exc.problem else next(
            (k for k in ("max_short_ratio", "max_beyond_ratio") if getattr(settings, k) is not None
             and not getattr(settings, k) >= 1.0), "max_short_ratio")
        check.add(("probe", bad), cli_words(exc.line()))
    return settings


def _push(merged: dict, check: _Checker, flags: dict) -> tuple[str | None, str | None]:
    push_to, revision = merged.get("push_to"), merged.get("revision")
    if push_to is not None and check.typed("push_to", push_to, "str"):
        from ropeconv.hub import parse_model_spec

        if "@" in push_to:
            check.add("push_to", f"push_to {json.dumps(push_to)} names a revision — write the branch as "
                                 "revision = \"…\" instead of @")
            push_to = None
        else:
            try:
                parse_model_spec(push_to)
            except RopeconvError as exc:
                check.add("push_to", f"push_to: {exc.line()}")
                push_to = None
    elif push_to is not None:
        push_to = None
    if revision is not None and check.typed("revision", revision, "str"):
        if not revision.strip():
            check.add("revision", "revision (the branch to push to) is empty — name a branch or leave it out")
        elif not merged.get("push_to"):
            check.add("revision", "revision is the branch to push to, but there is no push_to — to pin the source's "
                                  "revision write source = \"org/name@REVISION\"")
        elif flags.get("create_pr") and revision.strip() != "main":
            check.add("revision", "create_pr opens a pull request against main, so it cannot be combined with "
                                  f"revision = {json.dumps(revision)}")
    elif revision is not None:
        revision = None
    if not merged.get("push_to"):
        for key in ("private", "create_pr"):  # from [defaults] they simply do not apply
            if flags.get(key) and check.origin.get((key,), ("conversion",))[0] != "defaults":
                check.add(key, f"{key} only applies with push_to — add push_to = \"org/name\" or remove {key}")
    return push_to, (revision.strip() if isinstance(revision, str) and revision.strip() else None)


def _probe_fingerprint(probe: ProbeSettings | None) -> dict | None:
    """The probe settings as they enter the recipe hash (a text file by its content, not its path)."""
    if probe is None:
        return None
    out = probe.to_dict()
    if probe.text is not None:
        try:
            out["text"] = "sha256:" + hashlib.sha256(probe.text.read_bytes()).hexdigest()
        except OSError:
            out["text"] = str(probe.text)
    return out


def recipe_hash(normalised: dict) -> str:
    """sha256 of the normalised conversion: key order, formatting, comments, int-vs-float and whether a
    value came from [defaults] do not change it; any value that changes the build does."""
    text = json.dumps(normalised, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- selection ----------------------------------------------------------------------------------------

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
