"""What the vLLM and SGLang runners share: empty package modules for the stubs, reading an engine's
cos/sin cache back into (inv_freq, attention factor), and one case's result rows. Imported by the
runners, which run as scripts from this folder inside an engine's environment."""

import sys
import traceback
import types

import torch


def pkg(name, path=None):
    """An empty package module (optionally pointing at the unpacked wheel's folder) under `name`."""
    module = types.ModuleType(name)
    if path:
        module.__path__ = [path]
    sys.modules[name] = module
    return module


def read(cache):
    """(inv_freq, attention factor) from a [positions, 2·(d/2)] cos|sin cache, read at position 1."""
    d = cache.shape[-1] // 2
    cos, sin = cache[1, :d].double(), cache[1, d:].double()
    return torch.atan2(sin, cos).tolist(), float(torch.hypot(cos[0], sin[0]))


def cache_result(rope, caches: dict, **extra) -> dict:
    """A case the engine built: its rotary class and each cache read back."""
    return {"ok": True, "rotary_class": type(rope).__name__, **extra,
            "caches": {name: read(cache) for name, cache in caches.items()},
            "cache_rows": {name: cache.shape[0] for name, cache in caches.items()}}


def error_result(exc: BaseException) -> dict:
    """A case the engine refused: the error and where in the engine it was raised (a result, not a failure)."""
    tb = traceback.extract_tb(exc.__traceback__)[-1]
    return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}", "where": f"{tb.filename}:{tb.lineno}"}
