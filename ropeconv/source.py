"""Where a MODEL argument points: a local folder, a GGUF file, or a Hub repo (`repo` or `repo@rev`).

`resolve()` is the one entry point; it returns a local folder (or file) to read plus what to
record about its origin. Hub repos are fetched by `ropeconv.hub` (only what is asked for).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ropeconv.errors import RopeconvError


@dataclass
class Source:
    path: Path  # local folder (or .gguf file) to read
    kind: str  # "local", "hub" or "gguf"
    spec: str  # the MODEL argument as given
    repo_id: str | None = None
    revision: str | None = None  # as asked (branch, tag or sha)
    sha: str | None = None  # the exact commit read
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "path": str(self.path)}
        if self.repo_id:
            out.update(repo_id=self.repo_id, revision=self.revision, sha=self.sha)
        return out


def looks_like_repo_id(model: str) -> bool:
    name = model.split("@", 1)[0]
    parts = name.split("/")
    return (len(parts) == 2 and all(parts) and not model.startswith((".", "/", "~"))
            and not Path(name).exists())


def resolve(model: str, *, need: str = "config") -> Source:
    """Resolve MODEL. `need` is "config" (config.json + small files), "weights" (everything the
    output needs) or "headers" (config + safetensors headers) — used for Hub repos."""
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return Source(path=path, kind="gguf", spec=model)
    if path.exists():
        if not path.is_dir():
            raise RopeconvError(f"{model} is a file, not a model folder",
                                "pass the folder that holds config.json (or a .gguf file)")
        return Source(path=path, kind="local", spec=model)
    if looks_like_repo_id(model):
        from ropeconv import hub  # imported lazily: huggingface_hub is not needed for local work

        return hub.resolve(model, need=need)
    raise RopeconvError(f"{model} does not exist", "pass a model folder, a .gguf file or a Hub repo id (org/name)")


def read_config(folder: Path) -> dict:
    """config.json of a model folder, parsed, with clear errors."""
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise RopeconvError(f"{folder} has no config.json",
                            "pass a Hugging Face model folder (the one with config.json)")
    try:
        text = cfg.read_text(encoding="utf-8")
    except PermissionError:
        raise RopeconvError(f"cannot read {cfg}: permission denied", "fix the file's permissions") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RopeconvError(f"cannot read {cfg}: {exc}", "check the file") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RopeconvError(f"{cfg} is not valid JSON ({exc.msg} at line {exc.lineno})",
                            "fix or re-download config.json") from None
    if not isinstance(config, dict):
        raise RopeconvError(f"{cfg} is not a JSON object", "fix or re-download config.json")
    return config


def read_json_object(path: Path) -> dict | None:
    """A small JSON file beside the weights (tokenizer_config.json, ropeconv.json, probe.json) as a
    dict; None when it is missing, unreadable or not an object — callers treat those alike."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
