"""Where a MODEL argument points: a local folder, a GGUF file, or a Hub repo (`repo` or `repo@rev`).

`resolve()` is the one entry point; it returns a local folder (or file) to read plus what to
record about its origin. Local folders are `ropeconv.folder`'s; Hub repos are fetched into one by
`ropeconv.hub` (only what is asked for), imported only when a repo id is given.
"""

from __future__ import annotations

from pathlib import Path

from ropeconv.errors import RopeconvError
from ropeconv.folder import Source


def looks_like_path(model: str) -> bool:
    """A MODEL argument meant as a local path, by what exists on disk: it starts with ./ ../ / ~, ends in
    .gguf, or its first component is an existing local folder (so `models/SmolLM2` is a mistyped path
    when ./models exists, and `org/name` is a repo id when ./org does not)."""
    if model.startswith((".", "/", "~")) or model.endswith(".gguf") or "\\" in model:
        return True
    name = model.split("@", 1)[0]
    first = name.split("/", 1)[0]
    return "/" in name and bool(first) and Path(first).is_dir() or name.count("/") > 1


def looks_like_repo_id(model: str) -> bool:
    name = model.split("@", 1)[0]
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not looks_like_path(model) and not Path(name).exists()


def resolve(model: str, *, need: str = "config") -> Source:
    """Resolve MODEL. `need` is "config" (config.json + small files), "weights" (everything the
    output needs) or "headers" (config + safetensors headers) — used for Hub repos."""
    if not model or any(ord(c) < 32 for c in model):
        raise RopeconvError(f"the model argument {model!r} is empty or holds control characters",
                            "pass a model folder, a .gguf file or a Hub repo id (org/name)")
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return Source(path=path, kind="gguf", spec=model)
    if path.exists():
        if not path.is_dir():
            raise RopeconvError(f"{model} is a file, not a model folder",
                                "pass the folder that holds config.json (or a .gguf file)")
        return Source(path=path, kind="local", spec=model)
    if looks_like_repo_id(model):
        from ropeconv.hub.sources import resolve as resolve_repo  # huggingface_hub: only for Hub repos

        return resolve_repo(model, need=need)
    if looks_like_path(model):
        parent = next((p for p in path.absolute().parents if p.exists()), None)
        hint = f" ({parent} exists, {path.name} is not in it)" if parent is not None and parent != Path("/") else ""
        raise RopeconvError(f"{model} does not exist: no local folder or file by that name{hint}",
                            "check the path (a Hub repo id is org/name, with no local folder named org)")
    raise RopeconvError(f"{model} does not exist", "pass a model folder, a .gguf file or a Hub repo id (org/name)")
