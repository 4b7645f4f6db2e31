"""ropeconv.launch: per-engine launch lines and runtime overrides. The vLLM override's keys are held
against transformers 5's own rotary module (the override applied to the unconverted config must load
exactly like the extended output); the serve lines against the verified rules they come from."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from engines.cases import Case, build_case, build_source
from engines.transformers_engine import run_cases
from ropeconv import api
from ropeconv.launch import OVERRIDE, SERVE, from_config, launch_lines, launch_report
from ropeconv.spec import read_spec

LONGROPE = {"short_factor": [1.0 + 0.01 * j for j in range(8)], "long_factor": [1.0 + 0.25 * j for j in range(8)]}
PARAMS = {"linear": {}, "ntk": {}, "dynamic": {}, "yarn": {"beta_fast": 24.0}, "llama3": {}, "longrope": LONGROPE}


def _extend(tmp_path, method):
    src = build_source("llama", tmp_path)
    out = tmp_path / f"out-{method}"
    report = api.extend(str(src), method, factor=4, params=PARAMS[method] or None, output=out, force=True)
    after = json.loads((out / "config.json").read_text())
    return src, out, report, after


def _conversion(after, method):
    return from_config(after, method, 4.0, 4096, 16384, "llama", after["rope_theta"])


def test_vllm_override_loads_like_the_extended_output(tmp_path):
    """Every method at once (one transformers run): the unconverted config updated with the override's keys
    builds the same rotary module as the extended output."""
    cases = []
    for method in PARAMS:
        src, out, _, after = _extend(tmp_path, method)
        overridden = tmp_path / f"overridden-{method}"
        overridden.mkdir()
        config = json.loads((src / "config.json").read_text())
        config.update(_conversion(after, method).hf_overrides)  # what --hf-overrides sets (flat for Llama)
        (overridden / "config.json").write_text(json.dumps(config))
        cases += [Case(f"out-{method}", "llama", method, out, positions=[2047, 16383]),
                  Case(f"override-{method}", "llama", method, overridden, positions=[2047, 16383])]
    _, raw = run_cases(cases, None)
    for method in PARAMS:
        out, override = raw[f"out-{method}"], raw[f"override-{method}"]
        assert out["ok"] and override["ok"], (method, out, override)
        for a, b in zip(out["probes"], override["probes"]):
            assert a["inv_freq"] == b["inv_freq"] and a["attention_scaling"] == b["attention_scaling"], method


def test_serve_lines_say_where_the_config_alone_falls_short(tmp_path):
    _, _, _, after = _extend(tmp_path, "longrope")
    lines = launch_lines(_conversion(after, "longrope"), "out")
    vllm = next(line for line in lines if line.engine == "vLLM" and line.kind == SERVE)
    assert vllm.needed and "--max-model-len 16384" in vllm.command
    _, _, _, after = _extend(tmp_path, "linear")
    lines = launch_lines(_conversion(after, "linear"))
    llamacpp = next(line for line in lines if line.engine == "llama.cpp" and line.kind == SERVE)
    assert llamacpp.needed and "-c 16384" in llamacpp.command and "0.3.36" in llamacpp.verified
    assert not next(line for line in lines if line.engine == "vLLM" and line.kind == SERVE).needed
    ollama = next(line for line in lines if line.engine == "Ollama")
    assert "PARAMETER num_ctx 16384" in ollama.command


def test_llamacpp_overrides_only_for_methods_it_has_switches_for(tmp_path):
    for method, flag in [("yarn", "--rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 4096"),
                         ("linear", "--rope-scaling linear --rope-scale 4"), ("ntk", "--rope-freq-base ")]:
        _, _, _, after = _extend(tmp_path, method)
        overrides = [line for line in launch_lines(_conversion(after, method)) if line.kind == OVERRIDE]
        assert any(line.engine == "llama.cpp" and flag in line.command for line in overrides), method
    for method in ("llama3", "longrope", "dynamic"):
        _, _, _, after = _extend(tmp_path, method)
        assert not [line for line in launch_lines(_conversion(after, method))
                    if line.kind == OVERRIDE and line.engine == "llama.cpp"], method


@pytest.mark.parametrize("family, method", [("stablelm", "yarn"), ("gemma3_text", "yarn"), ("phi3", "longrope"),
                                            ("qwen2_vl", "yarn"), ("llama", "ntk")])
def test_vllm_override_carries_the_outputs_rope_keys_whole(tmp_path, family, method):
    """vLLM replaces a dict-valued override outright, so the line must carry the output's entries whole
    (StableLM's partial factor, Gemma 3's sliding layers, Phi-3's top-level L0), nested under text_config
    where transformers 5 keeps Qwen2-VL's. What vLLM then computes is run in test_conformance_vllm.py."""
    case = build_case(family, method, tmp_path)
    after = json.loads((case.folder / "config.json").read_text())
    spec = read_spec(after, original_context=case.L0)
    (line,) = [x for x in launch_lines(from_config(after, method, 4.0, case.L0, case.served, spec.model_type, spec.theta))
               if x.engine == "vLLM" and x.kind == OVERRIDE]
    argv = shlex.split(line.command)
    hf = json.loads(argv[argv.index("--hf-overrides") + 1])
    if family == "qwen2_vl":  # a flat config.json, but transformers 5 reads it into text_config
        assert list(hf) == ["text_config"]
        hf = hf["text_config"]
    assert hf["rope_parameters"] == after["rope_parameters"]
    assert hf["max_position_embeddings"] == after["max_position_embeddings"] == case.served
    assert argv[argv.index("--max-model-len") + 1] == str(case.served)
    for key in ("rope_scaling", "partial_rotary_factor", "original_max_position_embeddings", "rope_theta"):
        assert hf.get(key) == after.get(key), key


def test_launch_report_is_json_and_light():
    after = {"max_position_embeddings": 32768, "rope_theta": 1e5,
             "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}}
    report = launch_report(from_config(after, "yarn", 4.0, 8192, 32768, "llama", 1e5), "out dir")
    json.dumps(report)
    assert {r["engine"] for r in report} >= {"vLLM", "SGLang", "llama.cpp", "Ollama"}
    assert any("'out dir'" in r["command"] for r in report)  # paths are shell-quoted
    code = "import sys, ropeconv.launch; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_extend_report_carries_launch_lines_and_engine_rules(tmp_path):
    _, out, report, _ = _extend(tmp_path, "longrope")
    needed = [line for line in report["launch"] if line["needed"] and line["kind"] == SERVE]
    assert any(line["engine"] == "vLLM" and "--max-model-len 16384" in line["command"] and str(out) in line["command"]
               for line in needed)
    assert {rule["engine"] for rule in report["engine_rules"]} >= {"vllm", "llamacpp"}  # as `check` warns
    _, _, report, _ = _extend(tmp_path, "yarn")
    assert [rule["versions"] for rule in report["engine_rules"]] == ["transformers 4.45–4.50"]


def test_hugging_face_output_says_how_to_make_the_gguf(tmp_path):
    """llama.cpp and Ollama need a GGUF: the serve lines convert the real output with llama.cpp's
    convert_hf_to_gguf.py and name the GGUF that writes (they used to print ./MODEL.gguf)."""
    _, _, _, after = _extend(tmp_path, "linear")
    lines = {line.engine: line for line in launch_lines(_conversion(after, "linear"), "out dir") if line.kind == SERVE}
    assert lines["llama.cpp"].command == ("python convert_hf_to_gguf.py 'out dir' --outfile 'out dir.gguf' && "
                                          "llama-server -m 'out dir.gguf' -c 16384")
    assert "'FROM ./out dir.gguf'" in lines["Ollama"].command and "MODEL" not in lines["Ollama"].command
