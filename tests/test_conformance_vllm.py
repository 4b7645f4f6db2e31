"""vLLM's own code (the vllm 0.33.0 wheel from the package index, see tests/engines/vllm_runner.py for
the stubs and why none is RoPE) on ropeconv's outputs for every family × method:

- the class get_rope chooses, with the arguments the family's model file passes
  (tests/engines/vllm_models.py; `test_vllm_model_files_still_call_get_rope_so` checks the wheel), and
  its cos/sin cache served at the full context (max_model_len = L0·s, what the launch line asks for),
  must be what the method means — or a verified rule in `ropeconv.engines.RULES` must say what vLLM
  computes instead;
- the served length (vllm/config/model.py _get_and_verify_max_len, run) must be `check`'s number;
- every combination ropeconv refuses is refused, and where the reason is vLLM's behaviour the engine
  code is run on the config ropeconv would not write, to show it;
- the runtime override ropeconv prints (`vllm serve MODEL --hf-overrides JSON --max-model-len N`), applied
  by vLLM's own config loading to the family's unconverted model, must give what the output gives.

Families vLLM serves through its Transformers backend (vllm_models.TRANSFORMERS_BACKEND) run
transformers' own rotary class: their RoPE is the transformers ≥ 5 suite's; their served length is run here.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from engines import session
from engines.cases import SOURCES, build_source
from engines.transformers_engine import close
from engines.venvs import VLLM, download, engine_env, vllm_root
from engines.vllm_models import MODELS, SOURCE, TRANSFORMERS_BACKEND
from ropeconv.engines import ENGINE_BY_KEY, rules_for, run_by_suite, served_context, read_as
from ropeconv.launch import OVERRIDE, from_config, launch_lines
from ropeconv.methods import CONVERTIBLE
from ropeconv.spec import read_spec

pytestmark = pytest.mark.engines
RUNNER = Path(__file__).parent / "engines" / "vllm_runner.py"
CASES = [f"{family}-{method}" for family in SOURCES for method in CONVERTIBLE]


def run_vllm(cases: list[dict]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(cases, handle)
    python, env = engine_env("vllm")  # the transformers release vLLM requires
    proc = subprocess.run([str(python), str(RUNNER), str(vllm_root()), handle.name, str(download(f"vllm=={VLLM}"))],
                          capture_output=True, text=True, env=env, timeout=600)
    os.unlink(handle.name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    session.set_root(tmp_path_factory.getbasetemp() / "conformance")
    cases = [c for c in session.matrix().values() if not c.refused]
    return run_vllm([{"id": c.id, "folder": str(c.folder), "max_model_len": c.served} for c in cases])


def config_of(case):
    config = json.loads((case.folder / "config.json").read_text())
    return config, read_spec(config, original_context=case.L0)


@pytest.mark.parametrize("case_id", CASES)
def test_vllm_computes_what_the_method_means(results, case_id):
    case = session.matrix()[case_id]
    if case.refused:  # exit 2 with the reason; the engine-side proofs are the tests below
        assert case.folder is None and case.refused
        return
    got = results[case.id]
    config, spec = config_of(case)
    rules = [r for r in rules_for(spec.model_type, case.method, "vllm") if r.outcome != "context"]
    # check's table says this suite ran vLLM's RoPE exactly where it did (not in the Transformers backend)
    assert run_by_suite("vllm", spec.model_type) == (spec.model_type not in TRANSFORMERS_BACKEND), spec.model_type
    if any(r.outcome == "fails" for r in rules):
        assert not got["ok"], got
        return
    assert got["ok"], got
    # served: with --max-model-len L0·s vLLM serves it, and check's number is the same
    engine = ENGINE_BY_KEY["vllm"]
    check = served_context(engine, read_as(engine, config, spec), config, spec)
    assert got["served"]["asked"] == case.served
    assert check == case.served
    context = [r for r in rules_for(spec.model_type, case.method, "vllm") if r.outcome == "context"]
    assert got["served"]["default"] == (case.L0 if context else case.served), (got["served"], context)
    if got.get("backend") == "transformers":
        assert spec.model_type in TRANSFORMERS_BACKEND
        return
    inside, full = case.positions
    inv, att = got["caches"]["cos_sin_cache"]

    def matches(position):
        want_inv, want_att = case.expected[position]
        return close(inv, want_inv) and math.isclose(att, want_att, rel_tol=1e-4)

    if not rules:
        assert matches(full) and matches(inside), got["rotary_class"]
        assert got["cache_rows"]["cos_sin_cache"] >= case.served  # the cache covers L0·s
        return
    (rule,) = rules
    if case.method == "longrope":  # long factors at every length once max_model_len > L0
        assert matches(full) and not matches(inside), rule.computes
    elif case.method == "dynamic":  # the factor has no effect: plain RoPE, a cache of L0 rows
        assert matches(inside) and not matches(full) and got["cache_rows"]["cos_sin_cache"] == case.L0, rule.computes
    elif case.method == "yarn":  # M-RoPE: the YaRN ramp from 4·L0, the attention factor right
        want_att = case.expected[full][1]
        assert not matches(full) and not matches(inside) and math.isclose(att, want_att, rel_tol=1e-4), rule.computes
    else:
        raise AssertionError(f"no expectation written for the vLLM rule on {case.method}: {rule.computes}")


def override_line(case) -> list[str]:
    """The `vllm serve` override line ropeconv prints for this output, split as a shell would."""
    config, spec = config_of(case)
    conversion = from_config(config, case.method, case.served / case.L0, case.L0, case.served, spec.model_type,
                             spec.theta)
    (line,) = [x for x in launch_lines(conversion) if x.engine == "vLLM" and x.kind == OVERRIDE]
    return shlex.split(line.command)


@pytest.fixture(scope="module")
def override_results(results):
    """Each family's unconverted source loaded by vLLM with the printed --hf-overrides and --max-model-len."""
    cases = []
    for case in session.matrix().values():
        if case.refused:
            continue
        argv = override_line(case)
        cases.append({"id": case.id, "folder": str(build_source(case.family, session.root())),
                      "hf_overrides": json.loads(argv[argv.index("--hf-overrides") + 1]),
                      "max_model_len": int(argv[argv.index("--max-model-len") + 1])})
    return run_vllm(cases)


@pytest.mark.parametrize("case_id", CASES)
def test_vllm_hf_overrides_line_gives_what_the_output_gives(results, override_results, case_id):
    """The override line on the unconverted model: the same served length (with the line's --max-model-len),
    rotary class and cos/sin cache as the extended output — or the same failure."""
    case = session.matrix()[case_id]
    if case.refused:
        pytest.skip("refused by ropeconv: no line printed")
    want, got = results[case.id], override_results[case.id]
    assert got["ok"] == want["ok"], (got.get("error"), want.get("error"))
    if not want["ok"]:
        return
    assert got["served"]["asked"] == want["served"]["asked"] == case.served, (got["served"], want["served"])
    assert got.get("backend") == want.get("backend")
    if want.get("backend"):  # transformers' own rotary class inside vLLM: read from the same config keys
        return
    assert got["rotary_class"] == want["rotary_class"]
    assert got["caches"].keys() == want["caches"].keys()
    for name, (inv, att) in want["caches"].items():
        assert close(got["caches"][name][0], inv) and math.isclose(got["caches"][name][1], att, rel_tol=1e-6), name


def test_vllm_model_files_still_call_get_rope_so():
    """The reproduced get_rope arguments (tests/engines/vllm_models.py) are still what the wheel's model
    files pass, and the Transformers-backend families are still routed there."""
    with zipfile.ZipFile(download(f"vllm=={VLLM}")) as zf:
        def text(name):
            return zf.read(f"vllm/model_executor/models/{name}").decode()
        for file in {f for f, _, _ in MODELS.values()}:
            source = text(file)
            missing = [line for line in SOURCE[file] if line not in source]
            assert not missing, (file, missing)
        assert "_init_rotary_emb" not in text("mistral.py")  # Mistral keeps Llama's get_rope call
        registry = text("registry.py")
        for arch in TRANSFORMERS_BACKEND.values():
            assert f'"{arch}": ("transformers", "TransformersForCausalLM")' in registry, arch


def swapped(tmp_path, source: Path, name: str, drop=(), **entry) -> dict:
    """A copy of `source` with its rope entry updated (a config ropeconv refuses to write)."""
    folder = tmp_path / name
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    top = entry.pop("top", {})
    config.update(top)
    for section in (config, config.get("text_config") or {}):
        for key in ("rope_scaling", "rope_parameters"):
            value = section.get(key)
            if isinstance(value, dict) and "full_attention" in value:
                value = value["full_attention"]
            if isinstance(value, dict) and "rope_type" in value:
                value.update(entry)
                for key in drop:
                    value.pop(key, None)
    (folder / "config.json").write_text(json.dumps(config))
    return {"id": name, "folder": str(folder), "max_model_len": 16384}


def test_vllm_builds_m_rope_only_for_the_methods_ropeconv_allows(tmp_path):
    """Why Qwen2-VL/Qwen2.5-VL take only yarn and ntk (ropeconv.families): given ropeconv's yarn output
    with the type swapped to linear, dynamic or llama3 (configs ropeconv refuses to write), vLLM's
    get_rope builds a one-dimensional rotary class; for yarn (and plain θ, i.e. ntk) the M-RoPE one."""
    session.set_root(tmp_path.parent / "conformance")
    source = session.matrix()["qwen2_vl-yarn"].folder
    extra = {"llama3": dict(low_freq_factor=1.0, high_freq_factor=4.0)}
    cases = [swapped(tmp_path, source, m, rope_type=m, **extra.get(m, {})) for m in ("yarn", "linear", "dynamic", "llama3")]
    classes = {k: v["rotary_class"] for k, v in run_vllm(cases).items()}
    assert classes["yarn"].startswith("MRotary"), classes
    assert not any(classes[m].startswith("MRotary") for m in ("linear", "dynamic", "llama3")), classes
    assert all(session.matrix()[f"qwen2_vl-{m}"].refused for m in ("linear", "dynamic", "llama3", "longrope"))


def test_vllm_runs_every_scaled_deepseek_type_as_its_yarn(tmp_path):
    """Why DeepSeek V3 takes only yarn and ntk: deepseek_v2.py rewrites any non-default rope_type to
    deepseek_yarn, so linear/dynamic/llama3/longrope (configs ropeconv refuses to write) are run as
    DeepSeek-YaRN or refused — never as the method named."""
    session.set_root(tmp_path.parent / "conformance")
    source = session.matrix()["deepseek_v3-yarn"].folder
    extra = {"llama3": dict(low_freq_factor=1.0, high_freq_factor=4.0),
             "longrope": dict(short_factor=[1.0] * 4, long_factor=[2.0] * 4)}
    methods = ("linear", "dynamic", "llama3", "longrope")
    # linear and dynamic outputs carry no original_max_position_embeddings and keep L0 as the length
    plain = dict(drop=("original_max_position_embeddings",), top={"max_position_embeddings": 4096})
    got = run_vllm([swapped(tmp_path, source, m, rope_type=m, **extra.get(m, {}), **(plain if m in methods[:2] else {}))
                    for m in ("yarn",) + methods])
    assert got["yarn"]["rotary_class"] == "DeepseekScalingRotaryEmbedding", got["yarn"]
    for m in methods[:2]:  # crash in DeepSeek-YaRN's constructor
        assert not got[m]["ok"] and "original_max_position_embeddings" in got[m]["error"], (m, got[m])
    for m in methods[2:]:  # silently run as DeepSeek-YaRN
        assert got[m]["rotary_class"] == "DeepseekScalingRotaryEmbedding", (m, got[m])
    assert all(session.matrix()[f"deepseek_v3-{m}"].refused for m in methods)
    print({m: got[m].get("rotary_class") or got[m]["error"] for m in got})  # shown with -s


def test_vllm_gives_gemma3_dynamic_no_context(tmp_path):
    """Why Gemma 3 refuses dynamic: a dynamic output keeps L0 in max_position_embeddings, and vLLM's
    _get_and_verify_max_len skips the factor for gemma3 (its length is taken as already scaled), so the
    served length stays L0 and --max-model-len L0·s is refused."""
    session.set_root(tmp_path.parent / "conformance")
    case = session.matrix()["gemma3_text-linear"]
    got = run_vllm([swapped(tmp_path, case.folder, "dynamic", rope_type="dynamic",
                            top={"max_position_embeddings": case.L0})])["dynamic"]
    assert got["served"]["default"] == case.L0, got
    assert str(got["served"]["asked"]).startswith("ValueError"), got
    assert session.matrix()["gemma3_text-dynamic"].refused


@pytest.mark.parametrize("case_id", CASES)
def test_check_says_what_vllm_computes(results, case_id):
    """check's vllm row agrees with what the engine's code computed on the same output."""
    case = session.matrix()[case_id]
    if case.refused:
        pytest.skip("refused by ropeconv (the test above checks exit 2)")
    session.check_agrees("vllm", case, results[case.id])


def test_an_explicit_attention_factor_reaches_vllms_yarn(tmp_path):
    """ropeconv writes `attention_factor` only when asked (with a warning naming the engines that ignore
    it): vLLM 0.33.0's YaRN class takes it."""
    from engines.cases import build_source
    from ropeconv import api

    session.set_root(tmp_path.parent / "conformance")
    out = tmp_path / "yarn-att"
    api.extend(str(build_source("llama", tmp_path)), "yarn", factor=4, params={"attention_factor": 1.2}, output=out)
    got = run_vllm([{"id": "att", "folder": str(out), "max_model_len": 16384}])["att"]
    assert math.isclose(got["caches"]["cos_sin_cache"][1], 1.2, rel_tol=1e-4), got
