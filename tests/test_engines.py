"""The engine table: each engine's rules as data, evaluated on real configs. The transformers ≥ 5
row is checked against transformers itself; the others against the rules' stated behaviour."""

from __future__ import annotations

import copy
import importlib
import json
import math
from pathlib import Path

import pytest

from ropeconv.engines import ENGINES, NOT_RUN, engine_table, intended, method_of, rules_for, rules_table, run_by_suite
from ropeconv.methods import base_inv_freq, ntk_theta
from ropeconv.spec import read_spec

CORPUS = Path(__file__).parent / "fixtures" / "configs"


def load(name: str) -> dict:
    return json.loads((CORPUS / f"{name}.json").read_text())


def rows(config: dict) -> dict[str, dict]:
    return {r["engine"]: r for r in engine_table(config, read_spec(config))}


def _rotary(config: dict):
    """transformers' own rotary embedding for this config: (inv_freq, attention_scaling)."""
    from transformers import AutoConfig

    model_type = config["model_type"]
    built = AutoConfig.for_model(model_type, **{k: v for k, v in copy.deepcopy(config).items() if k != "model_type"})
    module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    cls = next(getattr(module, n) for n in dir(module) if n.endswith("RotaryEmbedding") and "Yarn" not in n)
    rotary = cls(built)
    return rotary.inv_freq.tolist(), float(rotary.attention_scaling)


@pytest.mark.parametrize("name", ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "qwen3-8b", "mistral-7b-v0.1",
                                  "pythia-160m", "deepseek-v2-lite-chat"])
def test_intended_is_what_transformers_computes(name):
    config = load(name)
    want_inv, want_att = _rotary(config)
    inv, att = intended(read_spec(config))
    assert len(inv) == len(want_inv)
    assert all(math.isclose(a, b, rel_tol=2e-6) for a, b in zip(inv, want_inv))
    assert att == pytest.approx(want_att, rel=1e-6)


def test_longrope_intended_uses_long_factors_like_transformers():
    from transformers import Phi3Config
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = {k: v for k, v in load("phi-4-mini-instruct-4bit").items() if k != "quantization_config"}
    built = Phi3Config(**copy.deepcopy(config))
    want_inv, want_att = ROPE_INIT_FUNCTIONS["longrope"](built, None, seq_len=131072)
    inv, att = intended(read_spec(config))
    assert all(math.isclose(a, b, rel_tol=2e-6) for a, b in zip(inv, want_inv.tolist()))
    assert att == pytest.approx(want_att, rel=1e-6)


def test_published_configs_are_as_intended_everywhere():
    for name in ("llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "phi-4-mini-instruct-4bit", "deepseek-v2-lite-chat"):
        table = rows(load(name))
        spec = read_spec(load(name))
        for key, row in table.items():
            # as intended — except where a verified rule (held against the engine) names the release; an
            # engine the suite does not run for this family says that its verdict was read, not run
            intended = "as intended" + ("" if run_by_suite(key, spec.model_type) else NOT_RUN)
            verified = rules_for(spec.model_type, method_of(spec), key)
            assert row["inv_freq"] == intended or (verified and row["inv_freq"].startswith("differs in ")), \
                (name, key, row["inv_freq"])
            assert row["attention_factor"] == intended and row["run_by_suite"] == (intended == "as intended")


def test_vllm_and_sglang_served_lengths():
    config = load("qwen3-8b")
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    table = rows(config)
    assert table["vllm"]["context"] == 40960  # vLLM 0.33 keeps max_position_embeddings for yarn (run by the suite)
    assert table["sglang"]["context"] == 40960  # original present: max_position_embeddings as is
    assert table["tgi"]["context"] == 40960
    # transformers 4.51–4.55 and exllamav3 recompute factor = 40960 / 32768
    assert table["transformers4"]["inv_freq"] == "differs" and table["exllamav3"]["inv_freq"] == "differs"
    assert table["transformers5"]["inv_freq"] == "as intended"

    linear = load("mistral-7b-v0.1")
    linear["rope_scaling"] = {"rope_type": "linear", "factor": 4.0}
    table = rows(linear)
    assert table["vllm"]["context"] == table["sglang"]["context"] == 32768 * 4
    assert rows(load("llama-3.1-8b-instruct"))["vllm"]["context"] == 131072  # llama3 not multiplied


def test_dynamic_has_no_effect_in_vllm():
    """vLLM 0.33.0's DynamicNTKScalingRotaryEmbedding, run by tests/test_conformance_vllm.py: with L0 in
    max_position_embeddings its base θ·((s·max/max_trained) − (s − 1)) is θ. (Older notes said static
    at max·s; the engine's code says otherwise.)"""
    from ropeconv.engines import ENGINE_BY_KEY, frequencies, read_as, served_context

    config = load("mistral-7b-v0.1")
    config["rope_scaling"] = {"rope_type": "dynamic", "factor": 4.0}
    spec = read_spec(config)
    engine = ENGINE_BY_KEY["vllm"]
    reading = read_as(engine, config, spec)
    inv, _ = frequencies(reading, spec, served_context(engine, reading, config, spec))
    assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(inv, base_inv_freq(10000.0, spec.rotary_dim)))
    table = rows(config)
    assert table["vllm"]["inv_freq"] == "differs" and "dropped" in " ".join(table["vllm"]["notes"])
    assert table["sglang"]["inv_freq"].startswith("static")  # SGLang: computed once at max·s (run too)
    assert table["llamacpp"]["inv_freq"] == "differs" and "dropped" in " ".join(table["llamacpp"]["notes"])
    assert table["exllamav3"]["inv_freq"] == "refuses to load"
    assert table["transformers5"]["inv_freq"] == "as intended"


def test_both_type_keys_refused_by_exllamav2_only():
    table = rows(load("nexus-genv2-qwen2.5-vl"))
    assert table["exllamav2"]["inv_freq"] == "refuses to load"
    assert table["vllm"]["inv_freq"] == "as intended"  # the suite runs vLLM on Qwen2.5-VL
    conflict = load("deepseek-v2-lite-chat")
    conflict["rope_scaling"]["rope_type"] = "linear"
    assert rows(conflict)["vllm"]["inv_freq"] == "refuses to load"


def test_v5_only_config_is_lost_on_legacy_readers():
    table = rows(load("deepseek-v2-lite-chat-v5-resave"))
    assert table["transformers5"]["inv_freq"] == "as intended"
    assert table["vllm"]["inv_freq"] == "as intended" + NOT_RUN
    for key in ("transformers4", "tgi", "llamacpp"):
        assert table[key]["inv_freq"] == "differs", key
        assert any("rope_parameters is not seen" in n for n in table[key]["notes"])


def test_llamacpp_reads_llama3_original_at_top_level():
    config = load("llama-3.1-8b-instruct")
    config["rope_scaling"]["original_max_position_embeddings"] = 16384
    config["max_position_embeddings"] = 131072
    table = rows(config)
    assert table["llamacpp"]["inv_freq"] == "differs"  # converter default 8192
    config["original_max_position_embeddings"] = 16384
    assert rows(config)["llamacpp"]["inv_freq"] == "as intended"


def test_ntk_is_vllm_only_and_static_ntk_is_portable():
    config = load("mistral-7b-v0.1")
    config["rope_scaling"] = {"rope_type": "ntk", "factor": 4.0}
    table = rows(config)
    assert table["transformers5"]["inv_freq"].startswith("unknown rope type")
    portable = load("mistral-7b-v0.1")
    portable["rope_theta"] = ntk_theta(10000.0, 128, 4.0)
    assert {r["inv_freq"] for r in rows(portable).values()} == {"as intended", "as intended" + NOT_RUN}
    # a bare "as intended" exactly where the conformance suite ran that engine on the family
    assert {key for key, r in rows(portable).items() if r["inv_freq"] == "as intended"} == {
        e.key for e in ENGINES if run_by_suite(e.key, "mistral")} >= {"transformers5", "transformers4", "vllm", "sglang"}


def test_every_rule_has_a_source():
    for entry in rules_table():
        for name, rule in entry["rules"].items():
            assert rule["source"], (entry["engine"], name)
            if rule["verified"]:
                assert any(w in rule["source"] for w in (".py", "transformers 5.23", "vLLM", "sglang", "transformers")), rule
    assert {e.key for e in ENGINES} == {"transformers5", "transformers4", "vllm", "sglang", "tgi", "llamacpp",
                                         "exllamav2", "exllamav3"}


def test_every_verified_rule_names_engine_versions_and_what_it_was_verified_against():
    from ropeconv.engines import ENGINE_BY_KEY, RULES, verified_rules_table
    from ropeconv.methods import CONVERTIBLE

    for rule in RULES:
        assert rule.engine in ENGINE_BY_KEY and set(rule.methods) <= set(CONVERTIBLE)
        assert rule.outcome in ("differs", "fails", "context") and rule.computes and rule.verified and rule.fix
        assert rule.first or rule.last or rule.as_of, rule  # a version range, or the release it was seen in
    assert len(verified_rules_table()) == len(RULES)
    assert [r.versions for r in rules_for("llama", "yarn", "transformers4", "4.46.3")] == ["transformers 4.45–4.50"]
    assert rules_for("llama", "yarn", "transformers4", "4.51.0") == []


def test_readme_states_the_verified_rules_as_they_are():
    """The README's engine table is RULES itself (scripts/engine_rules_table.py writes it)."""
    from pathlib import Path

    from ropeconv.engines import rules_markdown

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- engine-rules:start -->\n", 1)[1].split("\n<!-- engine-rules:end -->", 1)[0]
    assert block == rules_markdown(), "run: python scripts/engine_rules_table.py"
