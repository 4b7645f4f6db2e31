"""One exception type for every user-facing failure, and the exit codes the CLI documents."""

from __future__ import annotations

# Exit codes (documented in the README; keep in sync).
EXIT_OK = 0
EXIT_FAILED = 1  # a probe verdict failed, or `check` found errors
EXIT_BAD_INPUT = 2  # invalid model, option, recipe or destination; nothing was written
EXIT_HUB = 3  # the Hub refused or could not be reached
EXIT_INTERNAL = 4  # a bug in ropeconv: rerun with --debug and report it


class RopeconvError(Exception):
    """A problem the user can fix. `str()` is one line: what is wrong, then how to fix it."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problem: str, fix: str | None = None, exit_code: int | None = None):
        self.problem = problem
        self.fix = fix
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.problem} — {self.fix}" if self.fix else self.problem


class HubError(RopeconvError):
    exit_code = EXIT_HUB


def did_you_mean(word: str, choices) -> str:
    """' (did you mean X?)' when a close match exists, else ''. Closeness is edit distance (a typo is
    one or two edits: `yaml` → `yarn`), then difflib's ratio for longer words."""
    import difflib

    choices = list(choices)
    lowered = str(word).lower()
    by_edits = sorted((_edits(lowered, c.lower()), c) for c in choices)
    if by_edits and by_edits[0][0] <= (1 if len(lowered) <= 3 else 2):
        return f" (did you mean '{by_edits[0][1]}'?)"
    match = difflib.get_close_matches(lowered, choices, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _edits(a: str, b: str) -> int:
    """Levenshtein distance, counting a swap of neighbours as one edit."""
    prev2, prev = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if prev2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            cur.append(cost)
        prev2, prev = prev, cur
    return prev[-1]
