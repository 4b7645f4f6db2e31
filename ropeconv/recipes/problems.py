"""Problems found in recipes: one `file:line: what is wrong — how to fix it` each, and the error
(`RecipeError`) that lists them all."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ropeconv.errors import EXIT_BAD_INPUT, RopeconvError

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
