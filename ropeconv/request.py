"""A conversion request: what the user asked for, typed, validated once.

The CLI, recipes, batch, tune and the library API all build a `ConversionRequest` with
`ConversionRequest.build(...)`. Everything that can be checked without the model is checked here,
with the method registry's defaults and validators. A problem raises `RequestError`, which carries
the field it is about: each front end words it in its own terms (`--factor` on the command line,
`factor` in a recipe) — see `RequestError.worded`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ropeconv.errors import RopeconvError
from ropeconv.methods import PARAMS, ParamError, get_method, validate_params
from ropeconv.numbers import MAX_FACTOR, MAX_TOKENS, finite_number, parse_tokens, show

BUFFER_MODES = ("rewrite", "drop", "keep")


class RequestError(RopeconvError):
    """A request value that is wrong. `field` is the request field (or method parameter) it is about;
    `{name}` in the text stands for how the front end spells that field (`{name:other}` for another
    field), `{on}` for how it switches that field on."""

    def __init__(self, field_name: str, problem: str, fix: str | None = None):
        self.field = field_name
        self.template = (problem, fix)
        on = f"pass {cli_flag(field_name)}"
        same = lambda f: f  # noqa: E731  (the library spells a field by its name)
        super().__init__(_fill(problem, same, field_name, on), _fill(fix, same, field_name, on) if fix else None)

    def worded(self, spell: Callable[[str], str], turn_on: Callable[[str], str] | None = None) -> RopeconvError:
        """The same error with the field spelled by a front end (e.g. `--factor`, `factor =`). `{on}` in
        the text stands for how that front end switches the field on: `turn_on(field)` (`set rebase =
        true` in a recipe), by default "pass " and the spelling (`pass --rebase`)."""
        problem, fix = self.template
        name = spell(self.field)
        on = turn_on(self.field) if turn_on is not None else f"pass {name}"
        return RopeconvError(_fill(problem, spell, self.field, on), _fill(fix, spell, self.field, on) if fix else None,
                             exit_code=self.exit_code)


def _fill(text: str, spell: Callable[[str], str], field_name: str, on: str) -> str:
    """`{name}` → the field as spelled, `{name:other}` → another field as spelled, `{on}` → how to set it."""
    text = re.sub(r"\{name:(\w+)\}", lambda m: spell(m.group(1)), text)
    return text.replace("{name}", spell(field_name)).replace("{on}", on)


def cli_flag(field_name: str) -> str:
    """How the command line spells a request field."""
    return "--" + field_name.replace("_", "-")


@dataclass(frozen=True)
class ConversionRequest:
    """One conversion, as asked. Exactly one of `factor` and `target_context` is set."""

    method: str
    factor: float | None = None
    target_context: int | None = None
    original_context: int | None = None  # L0 override
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    rebase: bool = False
    buffers: str = "rewrite"
    copy: bool = False
    output: Path | None = None
    force: bool = False
    dry_run: bool = False

    @classmethod
    def build(cls, method: str, *, factor: Any = None, target_context: Any = None, original_context: Any = None,
              params: Mapping[str, Any] | None = None, rebase: bool = False, buffers: str = "rewrite",
              copy: bool = False, output: str | Path | None = None, force: bool = False,
              dry_run: bool = False) -> ConversionRequest:
        """Validate raw values (CLI strings, recipe values, Python numbers) into a request."""
        try:
            name = get_method(method).name
        except RopeconvError as exc:
            raise RequestError("method", exc.problem, exc.fix) from None
        if (factor is None) == (target_context is None):
            raise RequestError("factor", "give exactly one of {name} and {name:target_context}",
                               "e.g. {name} 4, or {name:target_context} 32768 (32k)")
        try:
            method_params = validate_params(name, dict(params or {}))
        except ParamError as exc:
            raise RequestError(exc.name, exc.problem, exc.fix) from None
        if buffers not in BUFFER_MODES:
            raise RequestError("buffers", f"{{name}} {buffers!r} is not one of {', '.join(BUFFER_MODES)}",
                               "rewrite (default), drop or keep")
        return cls(
            method=name,
            factor=parse_factor(factor) if factor is not None else None,
            target_context=parse_token_field("target_context", target_context) if target_context is not None else None,
            original_context=parse_token_field("original_context", original_context) if original_context is not None else None,
            params=MappingProxyType(method_params),
            rebase=bool(rebase), buffers=buffers, copy=bool(copy),
            output=Path(output) if output is not None else None, force=bool(force), dry_run=bool(dry_run),
        )


def parse_factor(value: Any) -> float:
    """A scale factor: a finite number above 1 and at most MAX_FACTOR."""
    try:
        number = finite_number(value, "{name}")
    except RopeconvError as exc:  # its text names the field as {name}: worded by the front end
        raise RequestError("factor", exc.problem, "give a number greater than 1, e.g. 4") from None
    if number <= 1:
        raise RequestError("factor", f"{{name}} {show(value)} must be greater than 1 to extend the context",
                           "give a number greater than 1, e.g. 4")
    if number > MAX_FACTOR:
        raise RequestError("factor", f"{{name}} {show(value)} is beyond any meaningful RoPE scaling "
                           f"(at most ×{MAX_FACTOR:g})", "give a factor such as 4, 8 or 32")
    return number


def parse_token_field(field_name: str, value: Any) -> int:
    """A whole number of tokens from 1 to MAX_TOKENS for request field `field_name` (e.g. original_context)."""
    tokens = parse_tokens(value)
    if tokens is None:
        raise RequestError(field_name, f"{{name}} {show(value)} is not a whole number of tokens from 1 to {MAX_TOKENS}",
                           "give a whole number such as 32768 or 32k")
    return tokens


def parse_factor_list(name: str, text: str) -> list:
    """A LongRoPE list given as text: inline `1.0,1.1,…`, a JSON list, or a JSON file (a list, or an
    object holding `name` or `rope_scaling.name`)."""
    stripped = text.strip()
    if not stripped.startswith("[") and not _looks_like_numbers(stripped):
        path = Path(stripped).expanduser()
        try:
            is_file = path.is_file()
        except OSError:  # e.g. a name too long to be a path
            is_file = False
        if not is_file:
            raise RequestError(name, f"{{name}} {text[:40]!r} is neither a file nor a list of numbers",
                               "give 1.0,1.1,… or a JSON file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise RequestError(name, f"{{name}} file {path} is not valid JSON ({type(exc).__name__})",
                               "give a JSON list of numbers") from None
        if isinstance(data, dict):
            scaling = data.get("rope_scaling")
            data = data.get(name, scaling.get(name) if isinstance(scaling, dict) else None)
        if not isinstance(data, list):
            raise RequestError(name, f"{{name}} file {path} holds no list named {name}",
                               "give a JSON list of numbers, or an object with that key")
        return data
    try:
        return json.loads(stripped if stripped.startswith("[") else f"[{stripped}]")
    except (ValueError, RecursionError):
        raise RequestError(name, f"{{name}} {text[:40]!r} is not a list of numbers",
                           "give 1.0,1.1,… or a JSON file") from None


def _looks_like_numbers(text: str) -> bool:
    return bool(text) and all(c in "0123456789.,eE+- \t\n" for c in text) and any(c.isdigit() for c in text)


def method_param_names() -> list[str]:
    """Every method parameter a request can carry (the CLI makes one option of each)."""
    return list(PARAMS)
