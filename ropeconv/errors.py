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
    """' (did you mean X?)' when a close match exists, else ''."""
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""
