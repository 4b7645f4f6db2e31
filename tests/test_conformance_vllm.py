"""vLLM's own rotary-embedding code (the vllm 0.33.0 wheel from the package index, see
tests/engines/vllm_runner.py for the stubs and why none is RoPE) on ropeconv's llama-family outputs,
served at the full context (max_model_len = L0·s, what the launch line asks for): the class get_rope
chooses and the cos/sin cache it reads must be what the method means — or a verified rule in
`ropeconv.engines.RULES` must say what vLLM computes instead. vLLM's served-length code
(vllm/config/model.py _get_and_verify_max_len) imports the engine's whole config system and is not
run here; the rules about it were read there.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from engines import session
from engines.transformers_engine import close
from engines.venvs import vllm_root
from ropeconv.engines import rules_for
from ropeconv.methods import CONVERTIBLE

pytestmark = pytest.mark.engines
RUNNER = Path(__file__).parent / "engines" / "vllm_runner.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    session.set_root(tmp_path_factory.getbasetemp() / "conformance")
    cases = [session.matrix()[f"llama-{m}"] for m in CONVERTIBLE]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump([{"id": c.id, "folder": str(c.folder), "max_model_len": c.served} for c in cases], handle)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(RUNNER), str(vllm_root()), handle.name], capture_output=True,
                          text=True, env=env, timeout=600)
    os.unlink(handle.name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("method", CONVERTIBLE)
def test_vllm_computes_what_the_method_means(results, method):
    case = session.matrix()[f"llama-{method}"]
    got = results[case.id]
    assert got["ok"], got
    inside, full = case.positions
    inv, att = got["caches"]["cos_sin_cache"]

    def matches(position):
        want_inv, want_att = case.expected[position]
        return close(inv, want_inv) and math.isclose(att, want_att, rel_tol=1e-4)

    rules = [r for r in rules_for("llama", method, "vllm") if r.outcome != "context"]
    if not rules:
        assert matches(full) and matches(inside), got["rotary_class"]
        assert got["cache_rows"]["cos_sin_cache"] >= case.served  # the cache covers L0·s
        return
    (rule,) = rules
    if method == "longrope":  # long factors at every length once max_model_len > L0
        assert matches(full) and not matches(inside), rule.computes
    elif method == "dynamic":  # the factor has no effect: plain RoPE, a cache of L0 rows
        assert matches(inside) and not matches(full) and got["cache_rows"]["cos_sin_cache"] == case.L0, rule.computes
    else:
        raise AssertionError(f"no expectation written for the vLLM rule on {method}: {rule.computes}")


def test_vllm_builds_m_rope_only_for_the_methods_ropeconv_allows(tmp_path):
    """Why Qwen2-VL/Qwen2.5-VL take only yarn and ntk (ropeconv.families): given ropeconv's yarn output
    with the type swapped to linear, dynamic or llama3 (configs ropeconv refuses to write), vLLM's
    get_rope builds a one-dimensional rotary class; for yarn (and plain θ, i.e. ntk) the M-RoPE one."""
    import shutil

    session.set_root(tmp_path.parent / "conformance")
    source = session.matrix()["qwen2_vl-yarn"].folder
    cases = []
    for method in ("yarn", "linear", "dynamic", "llama3"):
        folder = tmp_path / method
        shutil.copytree(source, folder)
        config = json.loads((folder / "config.json").read_text())
        for section in (config, config.get("text_config") or {}):
            for key in ("rope_scaling", "rope_parameters"):
                if isinstance(section.get(key), dict) and "rope_type" in section[key]:
                    section[key]["rope_type"] = method
                    if method == "llama3":
                        section[key].update(low_freq_factor=1.0, high_freq_factor=4.0)
        (folder / "config.json").write_text(json.dumps(config))
        cases.append({"id": method, "folder": str(folder), "max_model_len": 16384})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(cases, handle)
    proc = subprocess.run([sys.executable, str(RUNNER), str(vllm_root()), handle.name], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    os.unlink(handle.name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    classes = {k: v["rotary_class"] for k, v in json.loads(proc.stdout).items()}
    assert classes["yarn"].startswith("MRotary"), classes
    assert not any(classes[m].startswith("MRotary") for m in ("linear", "dynamic", "llama3")), classes
