"""Problems found in recipes: one `file:line: what is wrong — how to fix it` each, the error
(`RecipeError`) that lists them all, and `recipe_words`: a library error worded with recipe keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ropeconv.errors import EXIT_BAD_INPUT, RopeconvError
from ropeconv.request import RequestError

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


def recipe_key(field_name: str) -> str:
    """How a recipe spells a request field: its key (`factor`, `original_context`)."""
    return field_name


def recipe_switch(field_name: str) -> str:
    """How a recipe switches a field on: `set rebase = true`."""
    return f"set {field_name} = true"


def probe_key(option: str) -> str:
    """How a recipe spells a probe option: its key in the probe table, `probe.lengths` (valid TOML for
    `lengths` under [conversion.probe]); L0 is the conversion's own `original_context`."""
    return option if option == "original_context" else f"probe.{option}"


def recipe_words(exc: RopeconvError) -> str:
    """A library error as a recipe shows it: an error about a request field (a RequestError) is
    worded with the recipe's keys, a probe option (a ProbeOptionError) with the probe table's;
    any other error is about no recipe key and keeps its words."""
    from ropeconv.probe.options import ProbeOptionError

    if isinstance(exc, ProbeOptionError):
        return exc.worded(probe_key, lambda option: f"set {probe_key(option)} = true").line()
    if isinstance(exc, RequestError):
        return exc.worded(recipe_key, recipe_switch).line()
    return exc.line()
