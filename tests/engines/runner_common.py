"""What the vLLM and SGLang runners share: empty package modules for the stubs, running functions taken
unchanged out of an engine's source file, reading an engine's cos/sin cache back into (inv_freq,
attention factor), and one case's result rows. Imported by the runners, which run as scripts from this
folder inside an engine's environment."""

import ast
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


def extract(text: str, path: str, names, namespace: dict) -> dict:
    """Run the top-level functions / assignments `names` ("Class.method" for a method) of one source
    file, unchanged, in `namespace` (which supplies what they import); the module itself imports the
    engine. Returns the namespace."""
    tree = ast.parse(text)
    wanted = []
    for node in tree.body:
        targets = [getattr(t, "id", "") for t in node.targets] if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.FunctionDef) and node.name in names or any(t in names for t in targets):
            wanted.append(node)
        if isinstance(node, ast.ClassDef):
            wanted += [item for item in node.body if isinstance(item, ast.FunctionDef)
                       and f"{node.name}.{item.name}" in names]
    found = {getattr(n, "name", None) for n in wanted} | {getattr(t, "id", None) for n in wanted
                                                           for t in getattr(n, "targets", ())}
    missing = [n for n in names if n.split(".")[-1] not in found]
    assert not missing, f"{path} no longer defines {missing}"
    exec(compile(ast.Module(body=wanted, type_ignores=[]), path, "exec"), namespace)
    return namespace


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
