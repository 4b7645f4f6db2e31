"""The conversion request: validated once, errors carry their field, each front end words them."""

from __future__ import annotations

import pytest

from ropeconv.errors import RopeconvError
from ropeconv.request import ConversionRequest, RequestError, cli_flag, parse_factor_list


def test_build_normalises_values_and_fills_registry_defaults():
    req = ConversionRequest.build("YaRN", factor="4", params={"beta_fast": 16})
    assert (req.method, req.factor, dict(req.params)) == ("yarn", 4.0, {"beta_fast": 16.0})
    assert dict(ConversionRequest.build("llama3", factor=8).params) == {"low_freq_factor": 1.0, "high_freq_factor": 4.0}
    assert ConversionRequest.build("ntk", target_context="32k").target_context == 32768
    with pytest.raises(TypeError):
        ConversionRequest.build("ntk", factor=2).params["x"] = 1  # frozen: read-only parameters


@pytest.mark.parametrize("kwargs, field, text", [
    ({"factor": "abc"}, "factor", "is not a number"),
    ({"factor": "inf"}, "factor", "not a finite number"),
    ({"factor": 0.5}, "factor", "must be greater than 1"),
    ({"factor": 1e308}, "factor", "beyond any meaningful"),
    ({"factor": 4, "target_context": 8192}, "factor", "exactly one of"),
    ({"target_context": "lots"}, "target_context", "not a whole number of tokens"),
    ({"factor": 4, "original_context": 0}, "original_context", "not a whole number of tokens"),
    ({"factor": 4, "original_context": 10**400}, "original_context", "not a whole number of tokens"),
    ({"factor": 4, "params": {"beta_fst": 2}}, "beta_fst", "did you mean 'beta_fast'"),
    ({"factor": 4, "params": {"beta_fast": 1, "beta_slow": 1}}, "beta_fast", "must be greater than beta_slow"),
    ({"factor": 4, "buffers": "maybe"}, "buffers", "not one of rewrite, drop, keep"),
])
def test_bad_values_name_their_field(kwargs, field, text):
    with pytest.raises(RequestError, match=text) as err:
        ConversionRequest.build("yarn", **kwargs)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_each_front_end_words_the_field_its_own_way():
    with pytest.raises(RequestError) as err:
        ConversionRequest.build("yarn")
    assert str(err.value).startswith("give exactly one of factor and target_context")
    assert err.value.worded(cli_flag).line().startswith("give exactly one of --factor and --target-context")
    assert err.value.worded(lambda f: f"`{f} =`").problem == "give exactly one of `factor =` and `target_context =`"


def test_unknown_method_suggests_the_near_one():
    with pytest.raises(RequestError, match="unknown method 'yaml' \\(did you mean 'yarn'\\?\\)"):
        ConversionRequest.build("yaml", factor=4)
    with pytest.raises(RopeconvError, match="not a RoPE scaling method"):
        ConversionRequest.build("alibi", factor=4)


def test_inline_factor_lists_longer_than_a_file_name_are_lists(tmp_path):
    text = ",".join(["1.0625"] * 64)  # real LongRoPE lists are hundreds of characters
    assert len(text) > 255 and parse_factor_list("short_factor", text) == [1.0625] * 64
    path = tmp_path / "factors.json"
    path.write_text('{"rope_scaling": {"long_factor": [1, 2]}}')
    assert parse_factor_list("long_factor", str(path)) == [1, 2]
    with pytest.raises(RequestError, match="neither a file nor a list"):
        parse_factor_list("long_factor", str(tmp_path / "missing.json"))
