"""ropeconv.numbers: the one number parser. Every absurd value is a RopeconvError (exit 2), never a crash."""

from __future__ import annotations

import math

import pytest

from ropeconv.errors import RopeconvError
from ropeconv.numbers import MAX_FACTOR, MAX_TOKENS, finite_number, parse_tokens, positive_int, scale_factor, show


@pytest.mark.parametrize("value, expected", [
    (32768, 32768), ("32768", 32768), ("32k", 32768), ("1.5k", 1536), ("1m", 1048576), ("128_000", 128000),
    (8192.0, 8192), (MAX_TOKENS, MAX_TOKENS),
])
def test_token_counts(value, expected):
    assert parse_tokens(value) == expected


@pytest.mark.parametrize("value", [
    True, False, 0, -1, MAX_TOKENS + 1, int("9" * 400), "9" * 400, "1e30", 1e30, math.inf, math.nan, "nan", "abc",
    "1.5", 1.5, None, [], {}, "4" * 100 + "k", "", "0k",
])
def test_not_token_counts(value):
    assert parse_tokens(value) is None


@pytest.mark.parametrize("value", [int("9" * 400), math.inf, -math.inf, math.nan, "nan", "inf", "1e400", True, None,
                                   [1], {"a": 1}, "abc", "1" * 100])
def test_finite_number_refuses_the_absurd_with_a_reason(value):
    with pytest.raises(RopeconvError) as info:
        finite_number(value, "rope_theta")
    assert "rope_theta" in info.value.line() and "\n" not in info.value.line()
    assert len(info.value.line()) < 200  # a 400-digit value is named by its size, not printed


def test_finite_number_accepts_real_numbers():
    assert finite_number(1e308, "x") == 1e308 and finite_number("2.5", "x") == 2.5 and finite_number(3, "x") == 3.0


@pytest.mark.parametrize("value", [0, -4, 2.5, MAX_TOKENS + 1, 1e30, "8192"])
def test_positive_int_bounds(value):
    if value == "8192":
        assert positive_int(value, "n") == 8192
        return
    with pytest.raises(RopeconvError):
        positive_int(value, "n")


@pytest.mark.parametrize("value", [0, -1, MAX_FACTOR * 2, 1e308, math.nan])
def test_scale_factor_bounds(value):
    with pytest.raises(RopeconvError):
        scale_factor(value, "factor")
    assert scale_factor(4, "factor") == 4.0


def test_show_keeps_messages_short_and_on_one_line():
    assert show(int("9" * 400)) == "a 400-digit number"
    assert "\n" not in show("a\nb") and len(show("x" * 1000)) <= 40
