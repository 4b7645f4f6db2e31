"""One parser for the numbers users and files give ropeconv: token counts, factors, finite floats.

Every front end (CLI options, recipes, config.json, GGUF metadata) goes through these, so a value is
accepted or refused the same way everywhere. Errors name the value and what would be accepted; no
value, however absurd (a 400-digit integer, 1e308, NaN, a boolean, a list), ends in an internal error.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ropeconv.errors import RopeconvError

# The absurd, refused with the reason: no engine serves more tokens than a 32-bit count holds
# (GGUF stores context lengths as uint32), and no RoPE scaling means anything past ×4096.
MAX_TOKENS = 2**32 - 1
MAX_FACTOR = 4096.0
# Attention heads are 64–256 dimensions wide; a claim past this is damage, refused before ropeconv
# allocates a frequency per pair.
MAX_HEAD_DIM = 65536
# Longest text accepted as a number: anything longer is not a typed value (and int() of a huge
# digit string is quadratic).
_MAX_NUMBER_TEXT = 64

_TOKENS = re.compile(r"^(\d+(?:\.\d+)?)([km]?)$", re.IGNORECASE)
_TOKEN_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def show(value: Any, limit: int = 40) -> str:
    """A value as it may appear in a one-line message: repr, control characters escaped, shortened."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"a {len(str(abs(value)))}-digit number"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # int too long for str(), or a self-nesting structure
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _spelled_tokens(value: Any) -> int | float | None:
    """The number a token count spells (32768, "32k", "1.5k", 8192.0), before any bound is applied;
    None when it spells no number at all (a boolean, NaN, a list, "abc", "-1")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, str) or len(value) > _MAX_NUMBER_TEXT:
        return None
    match = _TOKENS.match(value.strip().replace("_", ""))
    if not match:
        return None
    number = float(match.group(1)) * _TOKEN_UNITS[match.group(2).lower()]
    return number if math.isfinite(number) else None


def token_problem(value: Any, minimum: int = 1) -> str | None:
    """Why `value` is not a token count from `minimum` to MAX_TOKENS, as a phrase that follows "is"
    (the bound it breaks, so 10^12 is not called "not a whole number"); None when it is one."""
    number = _spelled_tokens(value)
    if number is None or number != int(number):
        return "not a whole number of tokens"
    if number > MAX_TOKENS:
        return f"more than {MAX_TOKENS} tokens, the most a context can hold (a 32-bit count)"
    if number < minimum:
        return f"fewer than {minimum} token{'s' if minimum != 1 else ''}"
    return None


def parse_tokens(value: Any) -> int | None:
    """A whole number of tokens from 1 to MAX_TOKENS: 32768, "32768", "32k", "1.5k", "1m", "128_000",
    32768.0 — else None (callers name the option in their message; `token_problem` says why)."""
    return None if token_problem(value) is not None else int(_spelled_tokens(value))


def token_count(value: Any, what: str, fix: str | None = None, minimum: int = 1) -> int:
    """`value` as a token count (see parse_tokens), or a one-line error naming `what` and the bound it breaks."""
    problem = token_problem(value, minimum)
    if problem is not None:
        raise RopeconvError(f"{what} {show(value)} is {problem}",
                            fix or f"pass a token count from {minimum} to {MAX_TOKENS} for {what}, e.g. 32768 or 32k")
    return int(_spelled_tokens(value))


def finite_number(value: Any, what: str, fix: str | None = None) -> float:
    """`value` as a finite float; refuses booleans, text that is not a number, inf, NaN and numbers
    beyond a float (a 400-digit integer)."""
    fix = fix or f"pass a finite number for {what}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RopeconvError(f"{what} {show(value)} is not a number", fix)
    if isinstance(value, str):
        if len(value) > _MAX_NUMBER_TEXT:
            raise RopeconvError(f"{what} {show(value)} is not a number", fix)
        try:
            value = float(value.strip().replace("_", ""))
        except ValueError:
            raise RopeconvError(f"{what} {show(value)} is not a number", fix) from None
    try:
        number = float(value)
    except OverflowError:
        raise RopeconvError(f"{what} ({show(value)}) is too large to be a real value", fix) from None
    if not math.isfinite(number):
        raise RopeconvError(f"{what} {show(value)} is not a finite number", fix)
    return number


def positive_int(value: Any, what: str, fix: str | None = None, maximum: int = MAX_TOKENS) -> int:
    """A whole number from 1 to `maximum` (JSON 8192 or 8192.0); refuses fractions, 0, negatives, absurd sizes."""
    number = finite_number(value, what, fix)
    if number != int(number) or not 0 < number <= maximum:
        raise RopeconvError(f"{what} {show(value)} is not a whole number from 1 to {maximum}",
                            fix or f"pass a whole number for {what}")
    return int(number)


def scale_factor(value: Any, what: str, fix: str | None = None) -> float:
    """A scaling factor: finite, greater than 0 and at most MAX_FACTOR."""
    number = finite_number(value, what, fix)
    if not 0 < number <= MAX_FACTOR:
        raise RopeconvError(f"{what} {show(value)} is outside (0, {MAX_FACTOR:g}]",
                            fix or f"pass a factor between 1 and {MAX_FACTOR:g} for {what}")
    return number
