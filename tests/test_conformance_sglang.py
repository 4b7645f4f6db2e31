"""SGLang's own rotary-embedding code (the sglang 0.5.23 wheel from the package index, see
tests/engines/sglang_runner.py for the stubs and why none is RoPE) on ropeconv's outputs for every
family × method: the class get_rope chooses, with the arguments the family's model file passes
(tests/engines/sglang_models.py, checked against the wheel by `test_sglang_model_files_still_call_get_rope_so`),
and its cos/sin cache must be what the method means — or a verified rule in `ropeconv.engines.RULES`
must say what SGLang computes instead. The served length is SGLang's own `get_context_length` (taken
out of its source file unchanged) and must be L0·s. Families without an SGLang model file (its
Transformers backend: gpt_neox, falcon, glm) and Gemma 3 (see sglang_models.NOT_RUN) have only their
served length run; `check` marks their RoPE as not run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from engines import session
from engines.transformers_engine import close
from engines.cases import SOURCES
from engines.sglang_models import MODELS, SOURCE, TRANSFORMERS_BACKEND
from engines.venvs import SGLANG, download, engine_env, sglang_root
from ropeconv.engines import rules_for, run_by_suite
from ropeconv.methods import CONVERTIBLE

pytestmark = pytest.mark.engines
RUNNER = Path(__file__).parent / "engines" / "sglang_runner.py"
CASES = [f"{family}-{method}" for family in SOURCES for method in CONVERTIBLE]


def run_sglang(cases: list[dict]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(cases, handle)
    python, env = engine_env("sglang")  # the transformers release SGLang requires
    proc = subprocess.run([str(python), str(RUNNER), str(sglang_root()), handle.name], capture_output=True,
                          text=True, env=env, timeout=600)
    os.unlink(handle.name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    session.set_root(tmp_path_factory.getbasetemp() / "conformance")
    return run_sglang([{"id": c.id, "folder": str(c.folder)} for c in session.matrix().values() if not c.refused])


@pytest.mark.parametrize("case_id", CASES)
def test_sglang_computes_what_the_method_means(results, case_id):
    case = session.matrix()[case_id]
    if case.refused:  # exit 2 with the reason (the engine-side proofs are in test_conformance_vllm.py)
        assert case.folder is None and case.refused
        return
    got = results[case.id]
    model_type = json.loads((case.folder / "config.json").read_text())["model_type"]
    rules = [r for r in rules_for(model_type, case.method, "sglang") if r.outcome != "context"]
    if any(r.outcome == "fails" for r in rules):
        assert not got["ok"], got
        return
    assert got["ok"], got
    assert got["served"] == case.served  # SGLang serves the full context from the config alone
    if got.get("backend"):  # no model file run: check's table must not claim this suite ran it
        assert not run_by_suite("sglang", model_type), model_type
        return
    assert run_by_suite("sglang", model_type), model_type
    inside, full = case.positions
    if "long_cos_sin_cache" in got["caches"]:  # one cache per factor set, switched per batch
        short, long = got["caches"]["short_cos_sin_cache"], got["caches"]["long_cos_sin_cache"]
        for (inv, att), position in ((short, inside), (long, full)):
            want_inv, want_att = case.expected[position]
            assert close(inv, want_inv) and math.isclose(att, want_att, rel_tol=1e-4), (case.method, position)
        assert not rules
        return
    inv, att = got["caches"]["cos_sin_cache"]
    at_full = close(inv, case.expected[full][0]) and math.isclose(att, case.expected[full][1], rel_tol=1e-4)
    at_inside = close(inv, case.expected[inside][0]) and math.isclose(att, case.expected[inside][1], rel_tol=1e-4)
    if not rules:
        assert at_full and at_inside, got["rotary_class"]
        assert got["cache_rows"]["cos_sin_cache"] >= case.served  # the cache covers L0·s
        return
    (rule,) = rules
    if rule.families is None and case.method == "dynamic":  # computed once, at the full length (static)
        assert at_full and not at_inside, (got["rotary_class"], rule.computes)
    else:  # only θ reached get_rope: plain RoPE, θ^(-2j/rotary_dim) for the rotary pairs
        theta = float(json.loads((case.folder / "config.json").read_text())["rope_theta"])
        plain = [theta ** (-2 * j / (2 * len(inv))) for j in range(len(inv))]
        assert got["rotary_class"] == "RotaryEmbedding" and close(inv, plain) and math.isclose(att, 1.0, rel_tol=1e-6), rule.computes
        assert len(inv) == len(case.expected[full][0])  # the rotary part is right, only the scaling is lost


def test_sglang_model_files_still_call_get_rope_so():
    """The reproduced get_rope arguments (tests/engines/sglang_models.py) are still in the wheel's model
    files, and the Transformers-backend families still have no SGLang model file."""
    import zipfile

    with zipfile.ZipFile(download(f"sglang=={SGLANG}")) as zf:
        models = {n: zf.read(n).decode() for n in zf.namelist()
                  if n.startswith("sglang/srt/models/") and n.endswith(".py")}
    for file in {f for f, _, _, _ in MODELS.values()}:
        missing = [line for line in SOURCE[file] if line not in models[f"sglang/srt/models/{file}"]]
        assert not missing, (file, missing)
    for arch in TRANSFORMERS_BACKEND.values():
        assert not any(f"class {arch}(" in text or f"EntryClass = {arch}" in text for text in models.values()), arch


@pytest.mark.parametrize("case_id", CASES)
def test_check_says_what_sglang_computes(results, case_id):
    """check's sglang row agrees with what the engine's code computed on the same output."""
    case = session.matrix()[case_id]
    if case.refused:
        pytest.skip("refused by ropeconv (the test above checks exit 2)")
    session.check_agrees("sglang", case, results[case.id])


def test_sglang_runs_every_scaled_deepseek_type_as_its_yarn(tmp_path):
    """Why DeepSeek V3 takes only yarn and ntk, on SGLang's side: deepseek_v2.py rewrites any scaled
    rope_type to deepseek_yarn, so llama3 and longrope (configs ropeconv refuses to write) run as
    DeepSeek-YaRN and linear/dynamic outputs (no original length) are refused or run as it too."""
    from test_conformance_vllm import swapped

    session.set_root(tmp_path.parent / "conformance")
    source = session.matrix()["deepseek_v3-yarn"].folder
    extra = {"llama3": dict(low_freq_factor=1.0, high_freq_factor=4.0),
             "longrope": dict(short_factor=[1.0] * 4, long_factor=[2.0] * 4)}
    plain = dict(drop=("original_max_position_embeddings",), top={"max_position_embeddings": 4096})
    methods = ("linear", "dynamic", "llama3", "longrope")
    got = run_sglang([{k: v for k, v in swapped(tmp_path, source, m, rope_type=m, **extra.get(m, {}),
                                                 **(plain if m in methods[:2] else {})).items() if k != "max_model_len"}
                      for m in ("yarn",) + methods])
    assert got["yarn"]["rotary_class"] == "DeepseekScalingRotaryEmbedding", got["yarn"]
    for m in methods:  # never the method named: DeepSeek-YaRN, or refused
        assert not got[m]["ok"] or got[m]["rotary_class"] == "DeepseekScalingRotaryEmbedding", (m, got[m])
    assert all(session.matrix()[f"deepseek_v3-{m}"].refused for m in methods)


def test_sglang_ignores_an_explicit_attention_factor(tmp_path):
    """SGLang 0.5.23's YaRN reads `attn_factor`, not the `attention_factor` transformers and ropeconv write:
    an explicit attention factor is replaced by the default 0.1·ln s + 1 (the warning ropeconv prints)."""
    from engines.cases import build_source
    from ropeconv import api
    from ropeconv.methods import yarn_get_mscale

    session.set_root(tmp_path.parent / "conformance")
    out = tmp_path / "yarn-att"
    api.extend(str(build_source("llama", tmp_path)), "yarn", factor=4, params={"attention_factor": 1.2}, output=out)
    got = run_sglang([{"id": "att", "folder": str(out)}])["att"]
    assert math.isclose(got["caches"]["cos_sin_cache"][1], yarn_get_mscale(4.0), rel_tol=1e-4), got
