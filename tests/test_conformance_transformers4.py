"""transformers 4.x, its own code, on every ropeconv output: each family × method the tool accepts is
extended by `ropeconv.api.extend`, loaded by that release (its config class and model class, built
from the output's config.json in a venv of its own, see tests/engines/venvs.py) and its rotary module
is called at a length inside L0 and at L0·s. What it computes must be what the method means — or a
verified rule in `ropeconv.engines.RULES` must say which release computes what instead. A rule that
the engine does not bear out fails too, so the rules `check` prints cannot drift from the engines.

4.57.6 (the last 4.x) runs by default; 4.46.3, 4.50.3 and 4.55.4 carry the `engines` marker (each
environment costs 2–6 minutes to build cold, then ~40 s a run). Nothing is stubbed.
"""

from __future__ import annotations

import pytest

from engines import session
from engines.cases import SOURCES
from ropeconv.engines import rules_for
from ropeconv.methods import CONVERTIBLE

VERSIONS = [pytest.param("4.46.3", marks=pytest.mark.engines), pytest.param("4.50.3", marks=pytest.mark.engines),
            pytest.param("4.55.4", marks=pytest.mark.engines), "4.57.6"]
CASE_IDS = [f"{family}-{method}" for family in SOURCES for method in CONVERTIBLE]


@pytest.fixture(scope="module", autouse=True)
def _root(tmp_path_factory):
    session.set_root(tmp_path_factory.getbasetemp() / "conformance")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_release_reads_the_output_as_the_rules_say(version, case_id):
    case = session.matrix()[case_id]
    if case.refused:
        pytest.skip(f"ropeconv refuses it ({case.refused}); tests/test_conformance_transformers5.py checks exit 2")
    ran, outcomes = session.transformers_results(version)
    assert ran == version
    outcome = outcomes[case_id]
    if outcome.status == "n/a":
        pytest.skip(f"{case.family} does not exist in transformers {version}")
    model_type = SOURCES[case.family][0]
    rules = rules_for(model_type, case.method, "transformers4", version)
    if outcome.status == "pass":
        assert not rules, (f"transformers {version} reads {case_id} as meant, but a rule says otherwise: "
                           f"{[r.computes for r in rules]}")
    else:
        assert rules, f"transformers {version} {outcome.status} on {case_id} and no rule says so: {outcome.detail}"
        assert {r.outcome for r in rules} >= {outcome.status}, (
            f"transformers {version} {outcome.status} on {case_id} ({outcome.detail}), the rules say "
            f"{[r.outcome for r in rules]}")
