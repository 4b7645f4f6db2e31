"""A local model folder: what a MODEL argument resolves to (`Source`), and the one confinement rule
for reading it — every path read must resolve inside the folder (a Hugging Face cache snapshot's
links into its own repo's blobs excepted) — with the readers of its small files.

Below `ropeconv.source` (which decides what a MODEL argument is) and `ropeconv.hub` (which fetches
Hub repos into folders): both use this module, neither is used by it.
"""

from __future__ import annotations

import json
import os
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


# -- confinement: what may be read from a model folder ----------------------------------------------

def is_cache_snapshot_blob(root: Path, target: Path) -> bool:
    """True when `root` is a Hugging Face cache snapshot (`…/models--x--y/snapshots/<rev>`) and `target`
    (resolved) is one of that repo's blobs (`…/models--x--y/blobs/<hash>`): how `hf download` stores files."""
    real_root = root.resolve()
    repo = real_root.parent.parent
    return (real_root.parent.name == "snapshots" and target.parent == repo / "blobs"
            and (repo / "blobs").is_dir())


def confined(root: Path, rel: str | Path) -> Path:
    """`root/rel`, refused (one line) when reading it would leave the model folder: an absolute or `..` name,
    or a symbolic link (of the file or of a folder on the way) whose target lies outside `root`. A real
    Hugging Face cache snapshot, whose files link to `../../blobs/<hash>`, is allowed. Returns the path
    to read (the link's target when it is one)."""
    rel_text = str(rel)
    if any(ord(c) < 32 for c in rel_text):
        raise RopeconvError(f"a file name {rel_text!r} holds control characters", "rename that file")
    rel_path = Path(rel_text)
    if rel_path.is_absolute() or ".." in rel_path.parts:
        raise RopeconvError(f"{rel_text!r} names a file outside the model folder {root}",
                            "file names must be inside the folder")
    path = root / rel_path
    real_root = root.resolve()
    target = path.resolve()
    if target == real_root or real_root in target.parents or is_cache_snapshot_blob(root, target):
        return target
    raise RopeconvError(f"{root / rel_path} is a link to {target}, outside the model folder {root}; "
                        "ropeconv does not read or copy files from outside it",
                        "remove the link, or, if that file belongs to the model, put a copy of it in its place")


def model_files(root: Path, skip: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Every file of a model folder (relative POSIX names, sorted), each checked by `confined()`. Linked
    folders are not entered; broken links are left out; names in `skip` are left out at any depth."""
    files = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for name in sorted(names):
            path = Path(folder) / name
            if name in skip or not path.exists():  # broken links are not carried
                continue
            rel = path.relative_to(root).as_posix()
            confined(root, rel)
            files.append(rel)
    for folder, dirs, _ in os.walk(root, followlinks=False):
        for name in dirs:
            if name not in skip and (Path(folder) / name).is_symlink():
                confined(root, (Path(folder) / name).relative_to(root))
    return files


def read_config(folder: Path) -> dict:
    """config.json of a model folder, parsed, with clear errors."""
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise RopeconvError(f"{folder} has no config.json",
                            "pass a Hugging Face model folder (the one with config.json)")
    confined(folder, "config.json")
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
    except RecursionError:
        raise RopeconvError(f"{cfg} nests deeper than any model config", "fix or re-download config.json") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise RopeconvError(f"{cfg} is not valid JSON ({exc})", "fix or re-download config.json") from None
    if not isinstance(config, dict):
        raise RopeconvError(f"{cfg} is not a JSON object", "fix or re-download config.json")
    return config


def read_json_object(path: Path) -> dict | None:
    """A small JSON file beside the weights (tokenizer_config.json, ropeconv.json, probe.json) as a
    dict; None when it is missing, unreadable or not an object — callers treat those alike."""
    try:
        confined(path.parent, path.name)
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, RopeconvError):
        return None
    return data if isinstance(data, dict) else None
