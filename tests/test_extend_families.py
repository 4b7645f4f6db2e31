"""Every family ropeconv names: extend with every method it accepts, load the output with
transformers, and compare the loaded rotary module with ropeconv's own numbers."""

from __future__ import annotations

import json

import pytest

from conftest import FAMILY_KWARGS, build_tiny, loaded_rope, rel_err, transformers_warnings
from ropeconv import api
from ropeconv.errors import RopeconvError
from ropeconv.plan import plan_extension

METHOD_PARAMS = {
    "linear": {}, "ntk": {}, "dynamic": {}, "yarn": {"beta_fast": 24.0},
    "llama3": {"low_freq_factor": 1.0, "high_freq_factor": 4.0}, "longrope": None,  # lists built per model
}
RESTRICTED = {"phi3": ("longrope",)}


def _params(method: str, config: dict, model_type: str) -> dict:
    if method == "longrope":
        from ropeconv.spec import read_spec

        half = read_spec(config).rotary_dim // 2
        return {"short_factor": [1.0 + 0.01 * j for j in range(half)],
                "long_factor": [1.0 + 0.5 * j for j in range(half)]}
    if method == "yarn" and model_type.startswith("deepseek"):
        return {"mscale": 0.707, "mscale_all_dim": 0.707}
    return dict(METHOD_PARAMS[method])


def _load(folder):
    from transformers import AutoModelForCausalLM

    with transformers_warnings() as warned:
        model = AutoModelForCausalLM.from_pretrained(folder)
    rope_warnings = [w for w in warned if "rope" in w.lower() or "factor" in w.lower()]
    return model, rope_warnings


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {mt: build_tiny(mt, root / mt) for mt in FAMILY_KWARGS}


CASES = [(mt, m) for mt in FAMILY_KWARGS for m in RESTRICTED.get(mt, METHOD_PARAMS)]


@pytest.mark.parametrize("model_type,method", CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_extend_then_load_matches(sources, tmp_path, model_type, method):
    src = sources[model_type]
    config = json.loads((src / "config.json").read_text())
    params = _params(method, config, model_type)
    original = 32768 if model_type == "qwen3" else None
    plan = plan_extension(config, method, factor=4, params=params, original_context=original)
    out = tmp_path / "out"
    report = api.extend(str(src), method, factor=4, params=params, output=out, original_context=original)
    assert report["served_context"] == 4 * (original or 4096)

    model, rope_warnings = _load(out)
    assert rope_warnings == []  # transformers only warns on bad rope values: none allowed
    layer = "full_attention" if model_type == "gemma3_text" else None
    inv, attention = loaded_rope(model, layer)
    assert rel_err(inv, plan.inv_freq) < 1e-6
    assert attention == pytest.approx(plan.attention_factor, rel=1e-9)
    if model_type == "gemma3_text":  # sliding-window layers keep their unscaled local θ
        sliding, att = loaded_rope(model, "sliding_attention")
        assert sliding[-1] == pytest.approx(1 / 10000.0 ** (14 / 16), rel=1e-5) and att == 1.0

    # transformers 4.x read only rope_scaling + top-level rope_theta: drop rope_parameters and the
    # legacy keys alone must give the same frequencies.
    legacy = json.loads((out / "config.json").read_text())
    legacy.pop("rope_parameters")
    (out / "config.json").write_text(json.dumps(legacy))
    model, _ = _load(out)
    inv_legacy, attention_legacy = loaded_rope(model, layer)
    assert rel_err(inv_legacy, plan.inv_freq) < 1e-6
    assert attention_legacy == pytest.approx(plan.attention_factor, rel=1e-9)


@pytest.mark.parametrize("model_type", ["llama", "gpt_neox", "phi", "gemma3_text", "qwen2"])
def test_legacy_shaped_source_reads_the_same(tiny, model_type):
    """A transformers 4.x config.json (rope_scaling + rope_theta) reads as the v5 one does."""
    from ropeconv.spec import read_spec

    v5 = read_spec(json.loads((tiny(model_type) / "config.json").read_text()))
    old = read_spec(json.loads((tiny(model_type, legacy=True) / "config.json").read_text()))
    assert (old.theta, old.rotary_dim, old.original_context, old.rope_type) == \
           (v5.theta, v5.rotary_dim, v5.original_context, v5.rope_type)
    assert old.shape == "legacy" and v5.shape == "v5"


@pytest.mark.parametrize("method", ["linear", "yarn", "ntk", "dynamic", "llama3"])
def test_phi3_refuses_methods_other_than_longrope(tiny, tmp_path, method):
    src = tiny("phi3")
    with pytest.raises(RopeconvError, match="phi3 cannot take .*only default or longrope"):
        api.extend(str(src), method, factor=4, output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dynamic_grows_with_the_running_length_as_transformers_does(tiny, tmp_path):
    import torch

    from ropeconv.methods import compute

    src = tiny("llama")
    api.extend(str(src), "dynamic", factor=4, output=tmp_path / "out")
    model, _ = _load(tmp_path / "out")
    rotary = model.model.rotary_emb
    x = torch.zeros(1, 1, 16)
    rotary(x, torch.arange(3 * 4096).unsqueeze(0))  # past L0: transformers recomputes θ
    plan = plan_extension(json.loads((src / "config.json").read_text()), "dynamic", factor=4)
    expected, _ = compute("dynamic", plan.before.basis(), {"factor": 4.0}, seq_len=3 * 4096)
    assert rel_err(rotary.inv_freq.double().tolist(), expected) < 1e-6


def test_qwen2_vl_keeps_mrope_section(tmp_path):
    """Multimodal config: the language model's keys live under text_config; mrope_section survives."""
    from transformers import Qwen2VLConfig

    from ropeconv.spec import read_spec

    config = {
        "model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"],
        "text_config": {"model_type": "qwen2_vl_text", "hidden_size": 64, "num_attention_heads": 4,
                        "num_key_value_heads": 2, "intermediate_size": 128, "num_hidden_layers": 2,
                        "vocab_size": 128, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
                        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
        "vision_config": {"depth": 1, "embed_dim": 32, "num_heads": 2, "hidden_size": 64},
    }
    plan = plan_extension(config, "yarn", factor=4)
    text = plan.config["text_config"]
    assert text["rope_scaling"]["mrope_section"] == [2, 3, 3]
    assert text["rope_parameters"]["mrope_section"] == [2, 3, 3]
    assert text["max_position_embeddings"] == 4 * 32768
    assert "rope_scaling" not in plan.config  # top level untouched
    loaded = Qwen2VLConfig.from_dict(plan.config)
    params = loaded.text_config.rope_parameters
    assert params["rope_type"] == "yarn" and params["mrope_section"] == [2, 3, 3] and params["factor"] == 4.0
    assert read_spec(plan.config).extra == {"mrope_section": [2, 3, 3]}


@pytest.mark.parametrize("method", ["yarn", "linear"])
def test_gemma3_legacy_shaped_source_is_written_nested(tiny, tmp_path, method):
    """Gemma 3 publishes rope_scaling + rope_theta + rope_local_base_freq; transformers v5 needs the
    nested rope_parameters (a flat one makes Gemma3Config fail), and only full attention is scaled."""
    src = tiny("gemma3_text", legacy=True, rope_theta=1e6)
    config = json.loads((src / "config.json").read_text())
    assert "rope_parameters" not in config and config["rope_local_base_freq"] == 10000.0
    plan = plan_extension(config, method, factor=4)
    out = tmp_path / "out"
    api.extend(str(src), method, factor=4, output=out)
    written = json.loads((out / "config.json").read_text())
    assert set(written["rope_parameters"]) == {"full_attention", "sliding_attention"}
    assert written["max_position_embeddings"] == 16384  # Gemma 3 keeps the scaled length there, even for linear
    model, rope_warnings = _load(out)
    assert rope_warnings == []
    inv, attention = loaded_rope(model, "full_attention")
    assert rel_err(inv, plan.inv_freq) < 1e-6 and attention == pytest.approx(plan.attention_factor)
    sliding, _ = loaded_rope(model, "sliding_attention")
    assert sliding[-1] == pytest.approx(1 / 10000.0 ** (14 / 16), rel=1e-5)
