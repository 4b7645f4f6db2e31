"""Running the matrix through a transformers release (its own code, in its own environment)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engines.cases import Case
from engines.venvs import transformers_env

RUNNER = Path(__file__).parent / "hf_runner.py"
REL = 1e-4  # inv_freq read back through float32 cos/sin (atan2) at position 1


@dataclass
class Outcome:
    case: str
    status: str  # "pass", "refused" (by ropeconv), "fails" (engine error), "differs", "n/a" (family absent)
    detail: str = ""
    rotary_class: str = ""


def run_cases(cases: list[Case], version: str | None) -> tuple[str, dict[str, dict]]:
    """(transformers version, raw results by case id); version None = the system transformers (5.x)."""
    todo = [{"id": c.id, "folder": str(c.folder), "positions": c.positions} for c in cases if c.folder]
    if version is None:
        python, env = sys.executable, {**os.environ, "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "HF_HUB_OFFLINE": "1"}
    else:
        python, env = transformers_env(version)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(todo, handle)
    try:
        proc = subprocess.run([str(python), str(RUNNER), handle.name], capture_output=True, text=True, env=env,
                              timeout=1200)
    finally:
        os.unlink(handle.name)
    if proc.returncode != 0:
        raise RuntimeError(f"runner failed in transformers {version}:\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout)
    return data["transformers"], data["results"]


def close(a: list[float], b: list[float], rel: float = REL) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=rel, abs_tol=1e-9) for x, y in zip(a, b))


def judge(case: Case, raw: dict | None) -> Outcome:
    if case.refused:
        return Outcome(case.id, "refused", case.refused)
    if raw is None:
        return Outcome(case.id, "fails", "no result")
    if not raw["ok"]:
        if "does not recognize this architecture" in raw["error"] or "Unrecognized model" in raw["error"] \
                or "has no attribute" in raw["error"] and "ForCausalLM" in raw["error"]:
            return Outcome(case.id, "n/a", raw["error"])
        return Outcome(case.id, "fails", f"{raw['error']} at {raw.get('where', '?')}")
    wrong = []
    for got in raw["probes"]:
        want_inv, want_att = case.expected[got["position"]]
        if not close(got["inv_freq"], want_inv):
            worst = max(abs(g / w - 1) for g, w in zip(got["inv_freq"], want_inv)) if len(got["inv_freq"]) == len(
                want_inv) else float("inf")
            wrong.append(f"inv_freq at length {got['position'] + 1} off by up to {worst:.1%}")
        if not math.isclose(got["attention_scaling"], want_att, rel_tol=REL):
            wrong.append(f"attention scaling at length {got['position'] + 1} is {got['attention_scaling']:.5g}, "
                         f"meant {want_att:.5g}")
    if wrong:
        return Outcome(case.id, "differs", "; ".join(wrong), raw["rotary_class"])
    return Outcome(case.id, "pass", "", raw["rotary_class"])
