"""transformers 5 (the system one), its own code, on every ropeconv output — and the parts of the
suite every engine shares: every combination ropeconv does not accept is refused by `ropeconv extend`
with exit 2 and its reason, and `check` warns about exactly the engine releases the verified rules
name. See tests/test_conformance_transformers4.py for how a case runs. Nothing is stubbed.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from engines import session
from engines.cases import SOURCES, build_source
from ropeconv.check import check_config
from ropeconv.cli import app
from ropeconv.engines import rules_for
from ropeconv.families import family_of
from ropeconv.methods import CONVERTIBLE
from ropeconv.spec import read_spec

CASE_IDS = [f"{family}-{method}" for family in SOURCES for method in CONVERTIBLE]


@pytest.fixture(scope="module", autouse=True)
def _root(tmp_path_factory):
    session.set_root(tmp_path_factory.getbasetemp() / "conformance")


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_transformers5_reads_every_output_as_meant(case_id):
    case = session.matrix()[case_id]
    if case.refused:
        pytest.skip("refused by ropeconv: test_refused_combinations_exit_2_with_the_reason")
    ran, outcomes = session.transformers_results(None)
    outcome = outcomes[case_id]
    model_type = SOURCES[case.family][0]
    rules = rules_for(model_type, case.method, "transformers5", ran)
    assert (outcome.status == "pass") == (not rules), f"transformers {ran} on {case_id}: {outcome.detail}"


REFUSED = [cid for cid in CASE_IDS
           if (fam := family_of(SOURCES[cid.rsplit("-", 1)[0]][0])) and fam.methods is not None
           and cid.rsplit("-", 1)[1] not in fam.methods]


@pytest.mark.parametrize("case_id", REFUSED)
def test_refused_combinations_exit_2_with_the_reason(tmp_path, case_id):
    family, method = case_id.rsplit("-", 1)
    src = build_source(family, tmp_path)
    extra = []
    if method == "longrope":  # complete parameters, so only the family's restriction can refuse it
        half = read_spec(json.loads((src / "config.json").read_text())).rotary_dim // 2
        extra = ["--short-factor", ",".join(["1.0"] * half), "--long-factor", ",".join(["2.0"] * half)]
    result = CliRunner().invoke(app, ["extend", str(src), "--method", method, "--factor", "4", "--dry-run", *extra])
    reason = family_of(SOURCES[family][0]).methods_reason
    assert result.exit_code == 2, result.output
    assert reason.split(":")[0][:40] in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_every_refusal_is_in_the_matrix():
    """The matrix's refusals are exactly the families' restrictions (nothing else is refused)."""
    refused = {cid for cid, case in session.matrix().items() if case.refused}
    assert refused == set(REFUSED)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_check_agrees_with_the_suite(case_id):
    """`check` on each output: no errors, transformers ≥ 5 as intended, and one engine-disagreement warning
    per verified rule for that family and method (the rules the engine tests hold against the engines)."""
    case = session.matrix()[case_id]
    if case.refused:
        pytest.skip("refused by ropeconv")
    config = json.loads((case.folder / "config.json").read_text())
    result = check_config(config)
    errors = [f for f in result["findings"] if f["severity"] == "error"]
    assert not errors, errors
    rows = {r["engine"]: r for r in result["engines"]}
    assert rows["transformers5"]["inv_freq"] == "as intended"
    assert rows["transformers5"]["attention_factor"] == "as intended"
    warned = sorted(f["engines"][0] for f in result["findings"] if f["check"] == "engine-disagreement")
    method = "default" if case.method == "ntk" else case.method
    assert warned == sorted(r.versions for r in rules_for(SOURCES[case.family][0], method))


def test_inline_factor_lists_longer_than_255_characters(tmp_path):
    """Issue 11 item 9: real LongRoPE lists (64 numbers) are longer than a file name may be."""
    from transformers import AutoConfig

    src = tmp_path / "wide"
    AutoConfig.for_model("llama", hidden_size=512, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, num_hidden_layers=1, vocab_size=128,
                         max_position_embeddings=4096).save_pretrained(src)
    short = ",".join(f"{1 + j / 1000:.6f}" for j in range(64))  # 64 pairs: head_dim 128
    long = ",".join(f"{1 + j / 10:.6f}" for j in range(64))
    assert len(short) > 255
    result = CliRunner().invoke(app, ["extend", str(src), "-m", "longrope", "-f", "4", "--short-factor", short,
                                      "--long-factor", long, "--dry-run"])
    assert result.exit_code == 0, result.output
