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

import json
import os
import re
from pathlib import Path
from typing import Any

try:  # Python 3.11+
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10 (pip install tomli)
    import tomli as tomllib  # type: ignore[no-redef]

from ropeconv.errors import RopeconvError, did_you_mean
from ropeconv.methods import PARAMS, ParamError, get_method, validate_params
from ropeconv.numbers import parse_tokens, show, token_problem
from ropeconv.recipes.hashing import _probe_fingerprint, recipe_hash
from ropeconv.recipes.lines import key_lines, line_of
from ropeconv.recipes.model import Conversion, ProbeSettings
from ropeconv.probe.options import ProbeOptionError
from ropeconv.recipes.problems import Problem, RecipeError, display_path, probe_key, recipe_words
from ropeconv.request import (BUFFER_MODES, ConversionRequest, RequestError, parse_factor, parse_factor_list,
                              parse_token_field)

SMOLLM2 = "smollm2"  # the special source: the SmolLM2-135M-Instruct demo folder (ropeconv.smollm)
SUFFIX = ".toml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Method parameters: the registry's (ropeconv.methods.PARAMS), as `ropeconv extend` takes them.
METHOD_PARAMS: tuple[str, ...] = tuple(PARAMS)
LIST_PARAMS: tuple[str, ...] = tuple(name for name, param in PARAMS.items() if param.kind == "factors")

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
# Keys people write for what recipes do not do: said plainly, never a did-you-mean that would turn
# `tune = true` into `truncate = true` (a valid recipe that tunes nothing).
NOT_IN_RECIPES = {
    "tune": "recipes do not tune — remove it; to search the scaling that measures best, run "
            "`ropeconv tune MODEL --target-context N` and write the parameters it reports into the recipe",
    "finetune": "recipes do not fine-tune — remove it; fine-tune the output with `ropeconv finetune`",
}
KIND_WORDS = {"str": "a string", "bool": "true or false", "int": "a whole number", "number": "a number"}
KIND_EXAMPLES = {"str": '"…"', "bool": "true", "int": "8192", "number": "4.0"}
EXAMPLES = {"method": '"yarn"', "source": '"org/name"', "name": '"model-yarn-x4"', "factor": "4.0",
            "original_context": "8192", "buffers": '"rewrite"', "push_to": '"org/name"', "revision": '"main"',
            "output": '"out/model-yarn-x4"', "device": '"cpu"', "dtype": '"auto"', "text": '"long.txt"',
            "dataset": '"emozilla/pg19-test"', "max_short_ratio": "1.25", "max_beyond_ratio": "1.5",
            "min_passkey_accuracy": "0.8"}



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
        problems.append(Problem(file, 0, f"cannot read it: {exc.strerror or exc} — check the path and its permissions"))
        return []
    try:
        data = tomllib.loads(text)
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        problems.append(Problem(file, 0, "invalid TOML: arrays or tables are nested too deeply to read — a recipe "
                                         "needs a few levels at most"))
        return []
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
                                    _unknown(key, TOP_KEYS, "at the top of a recipe file",
                                             "put conversions in [[conversion]] tables and shared keys in [defaults]")))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        problems.append(Problem(file, line_of(lines, ("defaults",)), "defaults must be a table — write [defaults] with its keys below it"))
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
                                "[conversion] is a single table — write [[conversion]] (double brackets) for each conversion"))
        return []
    out = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(Problem(file, line_of(lines, ("conversion",)),
                                    "conversion must be a list of tables — write [[conversion]] sections"))
            continue
        conv = _conversion(file, index, defaults, entry, lines, problems)
        if conv is not None:
            out.append(conv)
    return out


def _unknown(key: str, choices, where: str, fix: str | None = None) -> str:
    if key.replace("-", "_") in choices:
        return (f"unknown key '{key}' {where} (did you mean '{key.replace('-', '_')}'? recipe keys use underscores) "
                "— rename it")
    if key == "token":
        return "a Hub token never goes in a recipe — remove it and set HF_TOKEN (e.g. from CI secrets)"
    if key.lower() in NOT_IN_RECIPES:
        return f"unknown key '{key}' {where}: {NOT_IN_RECIPES[key.lower()]}"
    alias = ALIASES.get(key.lower())
    hint = f" (did you mean '{alias}'?)" if alias in choices else did_you_mean(key, choices)
    return f"unknown key '{key}' {where}{hint} — " + (fix or ("rename it" if hint else "remove it (the README's "
                                                                                     "'Recipes and CI' lists the keys)"))


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
    """32768, "32768", "32k" or "1.5k" -> tokens (None when not a positive whole number of tokens)."""
    tokens = parse_tokens(value)
    return tokens if tokens is not None and tokens > 0 else None


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
        if " — " not in message:  # every problem says how to fix it
            message += " — see the recipe format in the README ('Recipes and CI')"
        key = (key,) if isinstance(key, str) else (key or ())
        self.problems.append(Problem(self.file, self.line(*key), message))
        self.count += 1

    def typed(self, key: tuple[str, ...] | str, value: Any, kind: str) -> bool:
        if _is(kind, value):
            return True
        name = key if isinstance(key, str) else ".".join(key)
        key_name = key if isinstance(key, str) else key[-1]
        self.add(key, f"{name} must be {KIND_WORDS[kind]}, not {_describe(value)} — e.g. {key_name} = "
                      f"{EXAMPLES.get(key_name, KIND_EXAMPLES[kind])}")
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

    name = _name(merged, check)
    source = _source(merged, check, base_dir)
    method = _method(merged, check)
    factor, target, original = _scale(merged, check)
    params = _params(merged, check, method, base_dir)

    buffers = merged.get("buffers", "rewrite")
    if check.typed("buffers", buffers, "str") and buffers not in BUFFER_MODES:
        check.add("buffers", f"buffers {json.dumps(buffers)} is not one of {', '.join(BUFFER_MODES)}"
                             f"{did_you_mean(buffers, BUFFER_MODES)} — e.g. buffers = \"rewrite\"")
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
    try:  # every value was checked above with the same rules, key by key; this is the typed request
        request = ConversionRequest.build(method, factor=factor, target_context=target, original_context=original,
                                          params=params, rebase=flags["rebase"], buffers=buffers,
                                          copy=flags["copy"], force=flags["force"])
    except RequestError as exc:
        check.add(exc.field if (exc.field,) in origin else None, recipe_words(exc))
        return None
    params = dict(request.params)
    normalised = {
        "name": name, "source": merged["source"], "method": method, "factor": factor, "target_context": target,
        "original_context": original, "params": params, "output": output, "buffers": buffers,
        "rebase": flags["rebase"], "probe": _probe_fingerprint(probe),
        "push": {"push_to": push_to, "private": flags["private"], "revision": push_revision,
                 "create_pr": flags["create_pr"]} if push_to else None,
    }
    conv = Conversion(
        name=name, file=file, line=line_of(lines, ("conversion", index)), base_dir=base_dir,
        source=merged["source"], source_kind=source[0], request=request, source_path=source[1], repo_id=source[2],
        revision=source[3], output=output_path, probe=probe, push_to=push_to, private=flags["private"],
        push_revision=push_revision, create_pr=flags["create_pr"], normalised=normalised,
        sha256=recipe_hash(normalised),
        lines={key: check.line(key) for key in merged})
    return conv


def _name(merged: dict, check: "_Checker") -> str | None:
    name = merged.get("name")
    if name is None:
        check.add(None, 'this conversion has no name — add name = "…" (letters, digits, . _ -)')
    elif check.typed("name", name, "str") and not NAME_RE.match(name):
        check.add("name", f"name {json.dumps(name)} must start with a letter or digit and use only letters, "
                          "digits, '.', '_' and '-' (it names the output folder and the CI job) — e.g. "
                          'name = "qwen2.5-7b-yarn-x4"')
    return name


def _method(merged: dict, check: "_Checker") -> str | None:
    """The recipe's method, by its canonical name (None when missing or unknown: said as a problem)."""
    method = merged.get("method")
    if method is None:
        check.add(None, "no method — add method = \"yarn\" (or linear, ntk, dynamic, llama3, longrope)")
        return None
    if not check.typed("method", method, "str"):
        return None
    try:
        return get_method(method).name
    except RopeconvError as exc:
        check.add("method", exc.line())
        return None


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
        check.add("source", 'source is empty — write source = "org/name" (Hub), "./folder" (local) or "smollm2"')
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
    """factor or target_context, and original_context, with the request's own parsers."""
    from ropeconv.plan import resolve_scale

    factor, target, original = merged.get("factor"), merged.get("target_context"), merged.get("original_context")
    if factor is None and target is None:
        check.add(None, "give factor (e.g. factor = 4.0) or target_context (e.g. target_context = 131072)")
    if factor is not None and target is not None:
        check.add("target_context", "give factor or target_context, not both — keep one of them")
    factor_value = target_value = original_value = None
    if factor is not None and check.typed("factor", factor, "number"):
        try:
            factor_value = parse_factor(factor)
        except RequestError as exc:
            check.add("factor", recipe_words(exc))
    if target is not None:
        target_value = parse_target_context(target)
        problem = token_problem(target) if target_value is None and not isinstance(target, bool) else None
        if problem is not None and not problem.startswith("not "):  # a number past a bound: say the bound
            check.add("target_context", f"target_context {show(target)} is {problem} — e.g. target_context = "
                                        "131072 or \"128k\"")
        elif target_value is None:
            check.add("target_context", f"target_context must be a whole number of tokens, not {_describe(target)} "
                                        "— e.g. target_context = 131072 or \"128k\"")
    if original is not None and check.typed("original_context", original, "int"):
        try:
            original_value = parse_token_field("original_context", original)
        except RequestError as exc:
            check.add("original_context", recipe_words(exc))
        else:
            if original_value < 16:
                check.add("original_context", f"original_context {original} is not a plausible trained context — "
                                              "give the length the model was trained at, e.g. 8192")
                original_value = None
    if original_value and target_value and target_value <= original_value:
        check.add("target_context", f"target_context {target_value} is not longer than original_context "
                                    f"{original_value} — give a longer target")
    if original_value and factor_value:  # the plan's own rule: L0 × factor is a whole number of tokens
        try:
            resolve_scale(original_value, ConversionRequest(method="linear", factor=factor_value))
        except RequestError as exc:
            check.add("factor", recipe_words(exc))
    return factor_value, target_value, original_value


def _params(merged: dict, check: _Checker, method: str | None, base_dir: Path) -> dict:
    """Method parameters: recipe types checked key by key (longrope lists read from their files and
    inlined), then the method registry's own validation (`validate_params`)."""
    given = {k: v for k, v in merged.items() if k in METHOD_PARAMS}
    before = check.count
    if method is None:
        return {}
    allowed = get_method(method).params
    params: dict = {}
    for key, value in given.items():
        if key not in allowed:
            takes = ", ".join(allowed) or "no parameters besides the factor"
            check.add(key, f"'{key}' is not a parameter of {method} ({method} takes: {takes}) — remove it")
            continue
        kind = PARAMS[key].kind
        if kind == "factors":
            numbers = _factor_list(key, value, check, base_dir)
            if numbers is not None:
                params[key] = numbers
        elif check.typed(key, value, "bool" if kind == "bool" else "number"):
            params[key] = value
    if check.count > before:
        return params
    try:
        return validate_params(method, params)
    except ParamError as exc:
        message = exc.line()
        if exc.name in LIST_PARAMS and exc.name not in given:
            message = ("longrope needs both short_factor and long_factor — lists of numbers (rotary dims / 2 each) "
                       "or a JSON file holding them")
        check.add(exc.name if exc.name in given else "method", message)
        return params


def _factor_list(key: str, value: Any, check: _Checker, base_dir: Path) -> list | None:
    """A longrope list: inline in the recipe, or a JSON file relative to it (read by the request's parser)."""
    if isinstance(value, list):
        data = value
    elif isinstance(value, str):
        text = value.strip()
        candidate = _path(base_dir, text)
        try:
            data = parse_factor_list(key, str(candidate) if candidate.is_file() else text)
        except RequestError as exc:
            if not candidate.is_file() and not re.match(r"^[\s\[\d.,eE+-]+\]?$", text):
                check.add(key, f"{key} file {display_path(candidate)} does not exist — give a JSON file (relative to "
                               "the recipe) or a list of numbers")
            else:
                check.add(key, recipe_words(exc))
            return None
    else:
        check.add(key, f"{key} must be a list of numbers or a JSON file name, not {_describe(value)} — e.g. "
                       f"{key} = [1.0, 1.05] or \"factors.json\"")
        return None
    if not isinstance(data, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
        check.add(key, f"{key} must hold only numbers — e.g. [1.0, 1.05, 1.1]")
        return None
    return data


def _probe(value: Any, check: _Checker, base_dir: Path) -> ProbeSettings | None:
    if value is None or value is False:
        return None
    if value is True:
        return ProbeSettings()
    if not isinstance(value, dict):
        check.add("probe", f"probe must be true, false or a table ([conversion.probe]), not {_describe(value)} "
                           "— e.g. probe = true")
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
                check.add(where, f"probe lengths must be a string or a list, not {_describe(item)} — e.g. "
                                 "lengths = \"4k,16k\"")
                continue
            try:
                settings.lengths = parse_lengths(item)
            except ProbeOptionError as exc:  # worded with the probe table's key: probe.lengths
                check.add(where, f"{exc.worded(probe_key).problem} — e.g. lengths = \"4k,16k,32k\"")
        elif kind == "depths":
            from ropeconv.probe.passkey import parse_depths

            if isinstance(item, bool) or not isinstance(item, (str, list)):
                check.add(where, f"probe depths must be a string or a list, not {_describe(item)} — e.g. "
                                 "depths = \"0.1,0.5\"")
                continue
            try:
                settings.depths = list(parse_depths(item))
            except RopeconvError as exc:
                check.add(where, f"probe depths: {exc.problem} — e.g. depths = \"0.1,0.5,0.9\"")
        elif check.typed(where, item, kind):
            if key == "text":
                settings.text = _probe_text(item, check, base_dir)
            elif key == "device":
                from ropeconv.probe.measure import DEVICES

                if item not in DEVICES:
                    hint = " (did you mean 'cuda'?)" if item.lower() == "gpu" else did_you_mean(item, DEVICES)
                    check.add(where, f"probe device {json.dumps(item)} is not one of {', '.join(DEVICES)}{hint} — "
                                     "e.g. device = \"cpu\"")
                settings.device = item
            elif key == "dtype":
                from ropeconv.probe.measure import DTYPES

                if item not in DTYPES:
                    check.add(where, f"probe dtype {json.dumps(item)} is not one of {', '.join(DTYPES)}"
                                     f"{did_you_mean(item, DTYPES)} — e.g. dtype = \"auto\"")
                settings.dtype = item
            else:
                setattr(settings, key, float(item) if kind == "number" else item)
    if settings.text is not None and settings.dataset is not None:
        check.add(("probe", "dataset"), "probe text and dataset were both given — keep one")
    if settings.depths is not None and not settings.passkey:
        check.add(("probe", "depths"), "probe depths only apply with passkey = true — set passkey = true or remove depths")
    if settings.min_passkey_accuracy is not None and not settings.passkey:
        check.add(("probe", "min_passkey_accuracy"), "min_passkey_accuracy only applies with passkey = true — set passkey = true or remove it")
    if settings.lengths is not None and settings.quick:
        check.add(("probe", "quick"), "probe quick and lengths were both given — quick picks its own lengths")
    try:
        settings.thresholds()
    except RopeconvError:  # the verdict's rule; worded here with the probe table's keys
        ratios = [k for k in ("max_short_ratio", "max_beyond_ratio") if getattr(settings, k) is not None
                  and not getattr(settings, k) >= 1.0]
        if ratios:
            check.add(("probe", ratios[0]), "perplexity-ratio thresholds must be numbers ≥ 1 — e.g. "
                                            "max_short_ratio = 1.25, max_beyond_ratio = 1.5")
        else:
            check.add(("probe", "min_passkey_accuracy"), "min_passkey_accuracy must be between 0 and 1 — e.g. "
                                                         "min_passkey_accuracy = 0.8")
    return settings


def _probe_text(text: str, check: _Checker, base_dir: Path) -> Path:
    """The probe text a recipe names: `--text`'s rule (`text_file_problem`: a device such as /dev/zero is
    "not a file"), and a path written relative to the recipe must not leave its folder through a link."""
    from ropeconv.probe.text import text_file_problem

    where = ("probe", "text")
    path = _path(base_dir, text)
    if any(ord(c) < 32 for c in text):
        check.add(where, f"probe text {show(text)} holds control characters — name a plain file")
        return path
    problem = text_file_problem(path)
    if problem is not None:
        check.add(where, f"probe text file {display_path(path)} {problem} — name a UTF-8 text file (paths are "
                         "relative to the recipe file)")
    elif not Path(text).expanduser().is_absolute() and _leaves_through_link(path, base_dir):
        check.add(where, f"probe text file {display_path(path)} is a link to {path.resolve()}, outside the recipe's "
                         "folder; ropeconv does not follow links out of it — put the file itself there, or "
                         "write its real path")
    return path


def _leaves_through_link(path: Path, folder: Path) -> bool:
    """True when a link on the way to `path` (the file, or a folder) leads out of `folder`. A path that
    reaches outside only as written (`../texts/a.txt`, no link followed) is the recipe's own choice."""
    real_folder = folder.resolve()
    real = path.resolve()
    as_written = Path(os.path.normpath(real_folder / os.path.relpath(path.absolute(), folder.absolute())))
    return real != as_written and not (real == real_folder or real_folder in real.parents)


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
                                  f"revision = {json.dumps(revision)} — remove one of them")
    elif revision is not None:
        revision = None
    if not merged.get("push_to"):
        for key in ("private", "create_pr"):  # from [defaults] they simply do not apply
            if flags.get(key) and check.origin.get((key,), ("conversion",))[0] != "defaults":
                check.add(key, f"{key} only applies with push_to — add push_to = \"org/name\" or remove {key}")
    return push_to, (revision.strip() if isinstance(revision, str) and revision.strip() else None)
