"""Session-wide state shared by the conformance test modules: the case matrix (built once) and each
engine release's results (run once per release)."""

from __future__ import annotations

import functools
from pathlib import Path

from engines.cases import Case, build_matrix
from engines.transformers_engine import Outcome, judge, run_cases

_ROOT: list[Path] = []


def set_root(root: Path) -> None:
    if not _ROOT:
        _ROOT.append(root)


@functools.cache
def matrix() -> dict[str, Case]:
    return {c.id: c for c in build_matrix(_ROOT[0])}


@functools.cache
def transformers_results(version: str | None) -> tuple[str, dict[str, Outcome]]:
    """(the release that ran, outcome by case id); None = the system transformers (5.x)."""
    cases = matrix()
    ran, raw = run_cases(list(cases.values()), version)
    return ran, {cid: judge(case, raw.get(cid)) for cid, case in cases.items()}
