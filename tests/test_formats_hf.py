"""Every family ropeconv names: extend with every method it accepts, load the output with
transformers, and compare the loaded rotary module with ropeconv's own numbers."""

from __future__ import annotations

import json

import pytest

from conftest import FAMILY_KWARGS, build_tiny, loaded_rope, rel_err, transformers_warnings
from ropeconv import api
from ropeconv.families import FAMILIES
from ropeconv.errors import RopeconvError
from ropeconv.formats.hf import plan_config
from ropeconv.request import ConversionRequest

METHOD_PARAMS = {
    "linear": {}, "ntk": {}, "dynamic": {}, "yarn": {"beta_fast": 24.0},
    "llama3": {"low_freq_factor": 1.0, "high_freq_factor": 4.0}, "longrope": None,  # lists built per model
}
# the methods a family takes when restricted (ropeconv.families: Phi-3, DeepSeek MLA, M-RoPE, Gemma 3)
RESTRICTED = {name: family.methods for name, family in FAMILIES.items() if family.methods is not None}


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
    plan = plan_config(config, ConversionRequest.build(method, factor=4, params=params, original_context=original))
    out = tmp_path / "out"
    report = api.extend(str(src), method, factor=4, params=params, output=out, original_context=original)
    assert report["served_context"] == 4 * (original or 4096)

    model, rope_warnings = _load(out)
    if FAMILIES[model_type].legacy_keys(method):
        # Phi-3's 4.x-loadable legacy shape has no factor (Phi3Config 4.46–4.57 raises on a fourth key):
        # transformers 5 notes it derives the factor from the two lengths, as Phi-3's published configs do
        rope_warnings = [w for w in rope_warnings if "rope_parameters['original_max_position_embeddings']" not in w]
    assert rope_warnings == []  # transformers only warns on bad rope values: none allowed
    layer = "full_attention" if model_type == "gemma3_text" else None
    inv, attention = loaded_rope(model, layer)
    assert rel_err(inv, plan.rope.inv_freq) < 1e-6
    assert attention == pytest.approx(plan.rope.attention_factor, rel=1e-9)
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
    assert rel_err(inv_legacy, plan.rope.inv_freq) < 1e-6
    assert attention_legacy == pytest.approx(plan.rope.attention_factor, rel=1e-9)


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
    plan = plan_config(json.loads((src / "config.json").read_text()), ConversionRequest.build("dynamic", factor=4))
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
    plan = plan_config(config, ConversionRequest.build("yarn", factor=4))
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
    plan = plan_config(config, ConversionRequest.build(method, factor=4))
    out = tmp_path / "out"
    api.extend(str(src), method, factor=4, output=out)
    written = json.loads((out / "config.json").read_text())
    assert set(written["rope_parameters"]) == {"full_attention", "sliding_attention"}
    assert written["max_position_embeddings"] == 16384  # Gemma 3 keeps the scaled length there, even for linear
    model, rope_warnings = _load(out)
    assert rope_warnings == []
    inv, attention = loaded_rope(model, "full_attention")
    assert rel_err(inv, plan.rope.inv_freq) < 1e-6 and attention == pytest.approx(plan.rope.attention_factor)
    sliding, _ = loaded_rope(model, "sliding_attention")
    assert sliding[-1] == pytest.approx(1 / 10000.0 ** (14 / 16), rel=1e-5)


def test_fixed_legacy_shapes_for_transformers_4(tiny, tmp_path):
    """Phi-3 LongRoPE and OLMo 2 linear get exactly the rope_scaling their transformers 4.x config classes
    accept (tests/test_conformance_transformers4.py loads them there); the full entry stays in
    rope_parameters. What the fixed shape cannot carry is refused, not dropped."""
    phi3 = tiny("phi3")
    config = json.loads((phi3 / "config.json").read_text())
    params = _params("longrope", config, "phi3")
    new = plan_config(config, ConversionRequest.build("longrope", factor=4, params=params)).config
    assert new["rope_scaling"] == {"type": "longrope", **params}
    assert new["original_max_position_embeddings"] == 4096 and new["rope_parameters"]["factor"] == 4.0
    with pytest.raises(RopeconvError, match="attention_factor"):
        plan_config(config, ConversionRequest.build("longrope", factor=4, params={**params, "attention_factor": 1.1}))
    olmo2 = json.loads((tiny("olmo2") / "config.json").read_text())
    new = plan_config(olmo2, ConversionRequest.build("linear", factor=4)).config
    assert new["rope_scaling"] == {"type": "linear", "factor": 4.0}


def test_head_dim_is_written_where_the_class_would_see_none(tiny):
    """Mistral without a head_dim key: transformers 4.52–4.57 (and 5's Mixtral) would read None."""
    config = json.loads((tiny("mistral") / "config.json").read_text())
    config.pop("head_dim", None)
    new = plan_config(config, ConversionRequest.build("yarn", factor=4)).config
    assert new["head_dim"] == 16
    llama = json.loads((tiny("llama") / "config.json").read_text())
    llama.pop("head_dim", None)
    assert "head_dim" not in plan_config(llama, ConversionRequest.build("yarn", factor=4)).config


def test_a_transformers5_tokenizer_class_is_written_for_transformers4_readers(tmp_path):
    """A folder saved by transformers 5 names its tokenizer `TokenizersBackend`, which transformers 4.x (and
    llama.cpp's converter, pinned to 4.57.6) cannot load: the output names `PreTrainedTokenizerFast`, keeps
    every other key, raises model_max_length as before, says so in the report, and leaves the source as it was."""
    from model_files import snapshot, write_model

    source = write_model(tmp_path / "src", {"model_type": "llama", "max_position_embeddings": 4096,
                                            "rope_theta": 10000.0, "hidden_size": 64, "num_attention_heads": 4})
    tokenizer = {"backend": "tokenizers", "model_max_length": 4096, "tokenizer_class": "TokenizersBackend"}
    (source / "tokenizer_config.json").write_text(json.dumps(tokenizer, indent=2))
    (source / "tokenizer.json").write_text("{}")
    before = snapshot(source)
    report = api.extend(str(source), "yarn", factor=4, output=tmp_path / "out")
    written = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert written == {**tokenizer, "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 16384}
    assert report["tokenizer_class"] == "PreTrainedTokenizerFast" and report["tokenizer_model_max_length"] == 16384
    assert snapshot(source) == before


def test_a_tokenizer_class_transformers4_knows_is_not_reported(tmp_path):
    from model_files import write_model

    source = write_model(tmp_path / "src", {"model_type": "llama", "max_position_embeddings": 4096,
                                            "rope_theta": 10000.0, "hidden_size": 64, "num_attention_heads": 4})
    (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "model_max_length": 99999}))
    report = api.extend(str(source), "yarn", factor=4, output=tmp_path / "out")
    assert report["tokenizer_class"] is None and report["tokenizer_model_max_length"] is None
    assert (tmp_path / "out" / "tokenizer_config.json").read_bytes() == (source / "tokenizer_config.json").read_bytes()
