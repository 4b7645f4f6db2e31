"""The format-free plan: where a conversion scales from, its factor and served context, the frequencies."""

from __future__ import annotations

import pytest

from ropeconv.errors import RopeconvError
from ropeconv.methods import Basis, compute, ntk_theta
from ropeconv.plan import plan
from ropeconv.record import Base
from ropeconv.request import ConversionRequest, RequestError
from ropeconv.spec import read_spec

LLAMA = {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "rope_theta": 10000.0,
         "max_position_embeddings": 4096}


def test_plan_resolves_scale_and_computes_through_the_registry():
    spec = read_spec(LLAMA)
    rope = plan(spec, ConversionRequest.build("yarn", target_context="32k"))
    assert (rope.factor, rope.served_context, rope.original_context) == (8.0, 32768, 4096)
    inv, attention = compute("yarn", Basis(10000.0, 128, 4096), {"factor": 8.0})
    assert rope.inv_freq == inv and rope.attention_factor == attention and not rope.rebase


def test_ntk_writes_the_enlarged_theta():
    rope = plan(read_spec(LLAMA), ConversionRequest.build("ntk", factor=4))
    assert rope.theta == ntk_theta(10000.0, 128, 4.0) and rope.base_theta == 10000.0


def test_scaled_models_are_refused_unless_rebase_and_rebase_returns_to_the_recorded_base():
    scaled = dict(LLAMA, rope_theta=ntk_theta(10000.0, 128, 4.0), max_position_embeddings=16384)
    earlier = Base("ntk", 10000.0, 4096)
    with pytest.raises(RopeconvError, match="already scaled.*ntk by ropeconv"):
        plan(read_spec(scaled), ConversionRequest.build("yarn", factor=2), earlier)
    rope = plan(read_spec(scaled), ConversionRequest.build("yarn", factor=2, rebase=True), earlier)
    assert (rope.base_theta, rope.original_context, rope.served_context, rope.rebase) == (10000.0, 4096, 8192, True)


@pytest.mark.parametrize("kwargs, text", [
    ({"target_context": 4096}, "not longer than the trained context 4096"),
    ({"factor": "1.00001"}, "adds no whole token"),
    ({"factor": "1.3"}, "5324.8 is not a whole number of tokens"),
    ({"factor": 4000, "original_context": 2**31}, "more than any engine can serve"),
])
def test_scales_that_cannot_be_written_are_refused(kwargs, text):
    with pytest.raises(RequestError, match=text):
        plan(read_spec(LLAMA, original_context=kwargs.get("original_context")), ConversionRequest.build("yarn", **kwargs))


def test_longrope_lists_must_match_this_models_rotary_pairs():
    request = ConversionRequest.build("longrope", factor=4, params={"short_factor": [1.0] * 8, "long_factor": [1.0] * 8})
    with pytest.raises(RequestError, match="has 8 numbers but this model has 64 rotary dimension pairs") as err:
        plan(read_spec(LLAMA), request)
    assert err.value.field == "short_factor"


def test_allowed_but_suspicious_values_are_said_out_loud():
    spec = read_spec(LLAMA, original_context=32768)
    rope = plan(spec, ConversionRequest.build("yarn", factor=4, original_context=32768))
    assert any("is 8× config.json's max_position_embeddings (4096)" in w for w in rope.warnings)
    rope = plan(read_spec(LLAMA), ConversionRequest.build("yarn", factor=128))
    assert any("×128 is beyond ×32" in w for w in rope.warnings)
    assert plan(read_spec(LLAMA), ConversionRequest.build("yarn", factor=4)).warnings == []
