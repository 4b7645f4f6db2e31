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


def root() -> Path:
    """Where the matrix's sources (engines.cases.build_source) and outputs live."""
    return _ROOT[0]


@functools.cache
def matrix() -> dict[str, Case]:
    return {c.id: c for c in build_matrix(root())}


@functools.cache
def transformers_results(version: str | None) -> tuple[str, dict[str, Outcome]]:
    """(the release that ran, outcome by case id); None = the system transformers (5.x)."""
    cases = matrix()
    ran, raw = run_cases(list(cases.values()), version)
    return ran, {cid: judge(case, raw.get(cid)) for cid, case in cases.items()}


def meant(case: Case, caches: dict) -> bool:
    """Whether an engine's cos/sin cache(s) compute what the method means, inside L0 and at L0·s: one
    cache for both positions, or LongRoPE's short cache inside and long cache at the full length."""
    import math

    from engines.transformers_engine import close

    inside, full = case.positions
    if "long_cos_sin_cache" in caches:
        pairs = ((caches["short_cos_sin_cache"], inside), (caches["long_cos_sin_cache"], full))
    else:
        pairs = ((caches["cos_sin_cache"], inside), (caches["cos_sin_cache"], full))
    return all(close(inv, case.expected[p][0]) and math.isclose(att, case.expected[p][1], rel_tol=1e-4)
               for (inv, att), p in pairs)


def check_agrees(engine_key: str, case: Case, got: dict) -> None:
    """`ropeconv check`'s engine row for this output says what the engine's own code computed: a bare
    "as intended" exactly when it computed the method's meaning (or, for a family the engine serves
    through transformers' own classes, when the transformers ≥ 5 suite says so), "refuses to load" when
    it refused."""
    import json

    from ropeconv.engines import ENGINE_BY_KEY, evaluate
    from ropeconv.spec import read_spec

    config = json.loads((case.folder / "config.json").read_text())
    row = evaluate(ENGINE_BY_KEY[engine_key], config, read_spec(config, original_context=case.L0))
    if not got["ok"]:
        assert row["inv_freq"].startswith("refuses to load"), (row, got.get("error"))
    elif got.get("backend"):  # transformers' own rotary class inside the engine: read, not run here
        assert row["inv_freq"] == row["attention_factor"] == "as intended (read, not run)", row
    else:
        assert (row["inv_freq"] == "as intended" and row["attention_factor"] == "as intended") == meant(
            case, got["caches"]), (row, got["rotary_class"])
