"""ropeconv.spec: reading config.json's RoPE description — absurd values are one-line refusals naming the key,
and an unknown scaling type counts as scaled (never silently replaced)."""

from __future__ import annotations

import pytest

from model_files import CONFIG
from ropeconv.errors import RopeconvError
from ropeconv.spec import read_spec


def spec(**changes):
    return read_spec({**CONFIG, **changes})


def test_a_plain_config_reads():
    s = spec()
    assert (s.theta, s.rotary_dim, s.original_context, s.is_scaled) == (10000.0, 16, 4096, False)


@pytest.mark.parametrize("changes, key", [
    ({"rope_theta": int("9" * 400)}, "rope_theta"),
    ({"rope_theta": float("nan")}, "rope_theta"),
    ({"rope_theta": "10000"}, "rope_theta"),
    ({"max_position_embeddings": int("9" * 400)}, "max_position_embeddings"),
    ({"max_position_embeddings": 2**33}, "max_position_embeddings"),
    ({"max_position_embeddings": 0}, "max_position_embeddings"),
    ({"head_dim": True}, "head_dim"),
    ({"model_type": ["llama"]}, "model_type"),
    ({"layer_types": [{"type": "full_attention"}]}, "layer_types"),
    ({"layer_types": "full_attention"}, "layer_types"),
    ({"rope_scaling": {"rope_type": ["yarn"], "factor": 4}}, "rope_type"),
    ({"rope_scaling": {"rope_type": "linear", "factor": "abc"}}, "factor"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 0}}, "factor"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 1e308}}, "factor"),
    ({"head_dim": 2}, "rotary dimension"),
    ({"head_dim": 2**31}, "rotary dimension"),
])
def test_absurd_values_are_refused_naming_the_key(changes, key):
    with pytest.raises(RopeconvError) as info:
        spec(**changes)
    line = info.value.line()
    assert key in line and "\n" not in line and len(line) < 300


def test_an_unknown_rope_type_counts_as_scaled():
    s = spec(rope_scaling={"rope_type": "su-magic", "factor": 4.0})
    assert s.is_scaled and not s.is_known
    inv, attention = s.inv_freq()  # shown unscaled: ropeconv cannot compute what it does not know
    assert len(inv) == 8 and attention == 1.0


def test_a_gemma3_factor_of_zero_is_refused():
    cfg = {"model_type": "gemma3_text", "hidden_size": 64, "num_attention_heads": 4, "head_dim": 16,
           "max_position_embeddings": 4096,
           "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 0, "rope_theta": 1e6},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}
    with pytest.raises(RopeconvError, match="factor"):
        read_spec(cfg)


def test_a_scaling_entry_missing_what_its_type_needs_is_one_line():
    s = spec(rope_scaling={"rope_type": "llama3"})  # no low/high_freq_factor (found by the property suite)
    with pytest.raises(RopeconvError, match="has no low_freq_factor"):
        s.inv_freq()
