"""SGLang's own rotary-embedding code (the sglang 0.5.23 wheel from the package index, see
tests/engines/sglang_runner.py for the stubs and why none is RoPE) on ropeconv's llama-family outputs:
the class get_rope chooses and its cos/sin cache must be what the method means — or a verified rule
in `ropeconv.engines.RULES` must say what SGLang computes instead. The served length is SGLang's own
`get_context_length` (taken out of its source file unchanged) and must be L0·s.
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
from engines.venvs import sglang_root
from ropeconv.engines import rules_for
from ropeconv.methods import CONVERTIBLE

pytestmark = pytest.mark.engines
RUNNER = Path(__file__).parent / "engines" / "sglang_runner.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    session.set_root(tmp_path_factory.getbasetemp() / "conformance")
    cases = [session.matrix()[f"llama-{m}"] for m in CONVERTIBLE]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump([{"id": c.id, "folder": str(c.folder)} for c in cases], handle)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(RUNNER), str(sglang_root()), handle.name], capture_output=True,
                          text=True, env=env, timeout=600)
    os.unlink(handle.name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("method", CONVERTIBLE)
def test_sglang_computes_what_the_method_means(results, method):
    case = session.matrix()[f"llama-{method}"]
    got = results[case.id]
    assert got["ok"], got
    assert got["served"] == case.served  # SGLang serves the full context from the config alone
    inside, full = case.positions
    rules = rules_for("llama", method, "sglang")
    if method == "longrope":  # one cache per factor set, switched per batch
        short, long = got["caches"]["short_cos_sin_cache"], got["caches"]["long_cos_sin_cache"]
        for (inv, att), position in ((short, inside), (long, full)):
            want_inv, want_att = case.expected[position]
            assert close(inv, want_inv) and math.isclose(att, want_att, rel_tol=1e-4), (method, position)
        assert not rules
        return
    inv, att = got["caches"]["cos_sin_cache"]
    assert got["cache_rows"]["cos_sin_cache"] >= case.served  # the cache covers L0·s
    at_full = close(inv, case.expected[full][0]) and math.isclose(att, case.expected[full][1], rel_tol=1e-4)
    at_inside = close(inv, case.expected[inside][0]) and math.isclose(att, case.expected[inside][1], rel_tol=1e-4)
    if rules:  # dynamic: computed once, at the full length (static)
        (rule,) = rules
        assert at_full and not at_inside, (got["rotary_class"], rule.computes)
    else:
        assert at_full and at_inside, got["rotary_class"]
