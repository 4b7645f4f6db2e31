"""Secrets out of everything the tool writes: one scrubber for every line (progress, errors,
warnings) and every file (records, tune.json, the model card).

What counts as a secret: the password of any URL (`scheme://user:PASSWORD@host`, the user name may
be empty), any Hugging Face token-shaped string, the tokens this process was given (HF_TOKEN,
HUGGING_FACE_HUB_TOKEN) and any extra value the caller names. Pure and cheap: no heavy imports.
"""

from __future__ import annotations

import os
import re

MASK = "***"

# `//user:password@` or `//:password@`; the password runs to the last `@` before the host part, so a
# password containing `@` or `:` is masked whole. The host part (after `@`) has no `/`, `@` or space.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<password>[^\s/]*)@(?=[^\s/@]*(?:[/?#\s]|$))")
_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
# `password=...` in a libpq keyword/value string or a URL's query part
_PASSWORD_PARAM = re.compile(r"(?i)(?P<key>\bpassword\s*=\s*)(?P<value>'[^']*'|[^\s&;]+)")
_TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def env_tokens() -> list[str]:
    """The Hub tokens this process was given in the environment (those long enough to mask safely)."""
    found = [(os.environ.get(name) or "").strip() for name in _TOKEN_ENV]
    return [token for token in found if len(token) >= 4]


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """`text` with every secret masked: URL passwords, `password=` parameters, token-shaped strings,
    the environment's Hub tokens and the `secrets` given (longest first, so no part of one survives)."""
    text = str(text)
    for secret in sorted({s for s in (*secrets, *env_tokens()) if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _PASSWORD_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)
    return _HF_TOKEN.sub("hf_" + MASK, text)


def url_password(url: str) -> str | None:
    """The password a URL carries (None without one): callers pass it to `redact` so that it is masked
    wherever it shows up later, even outside a URL (a driver's error message quoting it alone)."""
    match = _URL_PASSWORD.search(url)
    if match and match["password"]:
        return match["password"]
    param = _PASSWORD_PARAM.search(url)
    return param["value"].strip("'") if param else None


def redact_json(value, secrets: tuple[str, ...] | list[str] = ()):
    """A JSON-shaped value (dicts, lists, strings) with `redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(str(k), secrets): redact_json(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_json(v, secrets) for v in value]
    return value
