"""Reading Hub repos: MODEL specs (`org/name[@revision]`), which files a command needs, `resolve()`
into huggingface_hub's cache (online, or offline from the cache), and safetensors headers read
with ranged requests instead of downloading the weights.
"""

from __future__ import annotations

import glob
import json
import re
from fnmatch import fnmatch
from pathlib import Path

from ropeconv.output import write_text_atomic
from ropeconv.errors import HubError, RopeconvError
from ropeconv.hub.client import (HubSettings, _api, _transient, _version, hub_error, hub_errors, settings,
                                 with_retries)
from ropeconv.folder import Source

NEEDS = ("config", "headers", "weights")
SMALL_FILE_LIMIT = 64 * 1024 * 1024

# Small files a conversion reads or carries over (root level only; sizes capped by SMALL_FILE_LIMIT).
CONFIG_PATTERNS = ("*.json", "*.md", "*.txt", "*.jinja", "*.py", "*.model", "*.tiktoken", "*.vocab",
                   "LICENSE*", "LICENCE*", "NOTICE*", "USE_POLICY*", "COPYING*")
INDEX_PATTERNS = ("*.safetensors.index.json", "*.bin.index.json")
# Other formats of the same weights: never needed to build a transformers output folder.
OTHER_FORMAT_SUFFIXES = (".gguf", ".onnx", ".onnx_data", ".tflite", ".mlmodel", ".msgpack", ".h5", ".ot", ".nemo")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


# -- MODEL specs ------------------------------------------------------------------------------------

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def parse_model_spec(model: str) -> tuple[str, str | None]:
    """`org/name` or `org/name@revision` -> (repo_id, revision or None)."""
    repo_id, at, revision = model.partition("@")
    if not _REPO_RE.match(repo_id) or ".." in repo_id or repo_id.endswith((".", "-")):
        raise RopeconvError(f"{repo_id!r} is not a valid Hub repo id",
                            "use org/name (letters, digits, '-', '_', '.'), optionally @revision")
    if at and not revision.strip():
        raise RopeconvError(f"{model!r} names no revision after '@'", "use org/name@BRANCH, @TAG or @COMMIT_SHA")
    return repo_id, (revision.strip() or None)


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch(path, p) for p in patterns)


def select_files(files: dict[str, int | None], need: str) -> list[str]:
    """Which repo files a command needs: small config/tokenizer/card files; plus the safetensors index
    ("headers"); or the whole model without other formats of the same weights ("weights")."""
    if need not in NEEDS:
        raise ValueError(f"need must be one of {NEEDS}, not {need!r}")

    def small(path: str) -> bool:
        size = files.get(path)
        return "/" not in path and (size is None or size <= SMALL_FILE_LIMIT) and _matches(path, CONFIG_PATTERNS)

    if need == "weights":
        has_safetensors = any(p.endswith(".safetensors") for p in files)
        chosen = [p for p in files  # root level: subfolders hold other formats (original/, onnx/…)
                  if "/" not in p and p != ".gitattributes" and not p.endswith(OTHER_FORMAT_SUFFIXES)
                  and not (has_safetensors and p.endswith(PICKLE_SUFFIXES))]
        return sorted(chosen)
    chosen = [p for p in files if small(p) and not _matches(p, INDEX_PATTERNS)]
    if need == "headers":
        chosen += [p for p in files if "/" not in p and _matches(p, INDEX_PATTERNS)]
    return sorted(chosen)


def _storage_folder(cfg: HubSettings, repo_id: str) -> Path:
    return Path(cfg.cache_dir) / ("models--" + repo_id.replace("/", "--"))


# -- resolve ----------------------------------------------------------------------------------------

def resolve(model: str, need: str = "config") -> Source:
    """Fetch what `need` asks for of a Hub repo into the cache; return its snapshot folder and exact sha."""
    repo_id, revision = parse_model_spec(model)
    select_files({}, need)  # validates `need`
    cfg = settings()
    if cfg.offline:
        return _resolve_cached(model, repo_id, revision, need, cfg, "HF_HUB_OFFLINE is set")
    api = _api(cfg)
    try:
        info = with_retries(lambda: api.model_info(repo_id, revision=revision, files_metadata=True))
    except Exception as exc:
        if _transient(exc):  # the Hub is unreachable: a cached snapshot still serves, as in transformers
            try:
                source = _resolve_cached(model, repo_id, revision, need, cfg, "the Hub could not be reached")
            except RopeconvError:
                raise hub_error(exc, cfg=cfg, repo_id=repo_id, revision=revision) from None
            source.info["warnings"] = [f"the Hub at {cfg.endpoint} could not be reached; "
                                       f"using the cached snapshot {source.sha}"]
            return source
        raise hub_error(exc, cfg=cfg, repo_id=repo_id, revision=revision) from None
    files = {s.rfilename: s.size for s in info.siblings or []}
    if "config.json" not in files:
        raise RopeconvError(f"{repo_id}@{revision or 'main'} has no config.json, so it is not a transformers model",
                            "pass a repo with config.json, or download its .gguf file and pass that")
    wanted = select_files(files, need)
    with hub_errors(cfg, repo_id=repo_id, revision=revision):
        folder = with_retries(lambda: _snapshot(repo_id, info.sha, wanted, cfg, local_only=False))
    _remember_ref(cfg, repo_id, revision or "main", info.sha)
    source = _source(model, repo_id, revision, Path(folder), cfg, need, wanted)
    source.info.update(files=files, lfs_sha256={s.rfilename: s.lfs.sha256 for s in info.siblings or [] if s.lfs},
                       private=info.private, gated=info.gated)
    if need == "headers":
        _prefetch_headers(source, files)
    return source


def _snapshot(repo_id: str, revision: str, wanted: list[str], cfg: HubSettings, *, local_only: bool) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, revision=revision, cache_dir=cfg.cache_dir, endpoint=cfg.endpoint,
                             allow_patterns=[glob.escape(p) for p in wanted], local_files_only=local_only,
                             library_name="ropeconv", library_version=_version())


def _remember_ref(cfg: HubSettings, repo_id: str, revision: str, sha: str) -> None:
    """Record branch/tag -> sha in the cache (as huggingface_hub does), so the same MODEL works offline later."""
    if revision == sha:
        return
    ref = _storage_folder(cfg, repo_id) / "refs" / revision
    try:
        ref.parent.mkdir(parents=True, exist_ok=True)
        if ref.is_file() and ref.read_text() == sha:
            return
        write_text_atomic(ref, sha)
    except (OSError, RopeconvError):
        pass  # only offline reuse by branch name is lost


def _source(model: str, repo_id: str, revision: str | None, folder: Path, cfg: HubSettings, need: str,
            wanted: list[str]) -> Source:
    return Source(path=folder, kind="hub", spec=model, repo_id=repo_id, revision=revision or "main",
                  sha=folder.name, info={"endpoint": cfg.endpoint, "need": need, "downloaded": wanted})


def _resolve_cached(model: str, repo_id: str, revision: str | None, need: str, cfg: HubSettings,
                    why: str) -> Source:
    """The cached snapshot for `model`, checked complete for `need`, without any network call."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError, IncompleteSnapshotError, LocalEntryNotFoundError

    rev = revision or "main"
    try:
        files = {f.path: f.size for f in get_cached_repo_tree(repo_id, revision=rev, cache_dir=cfg.cache_dir)}
        wanted = select_files(files, need)
    except CachedRepoTreeNotFoundError:  # snapshot made without a tree listing: config.json is what we can check
        files, wanted = None, ["config.json"]
    except Exception:  # a broken cache entry is treated as absent
        files, wanted = None, ["config.json"]
    try:
        folder = Path(_snapshot(repo_id, rev, wanted, cfg, local_only=True))
    except IncompleteSnapshotError as exc:
        missing = re.search(r"(\d+) file\(s\) are missing \(([^)]*)", str(exc))
        detail = f": {missing.group(1)} file(s) missing, e.g. {missing.group(2).split(',')[0]}" if missing else ""
        raise HubError(f"{model} is only partly in the local cache{detail}, and {why}",
                       "run once online (unset HF_HUB_OFFLINE) to complete the download") from None
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise HubError(f"{model} is not in the local cache ({cfg.cache_dir}), and {why}",
                       "run once online to download it (unset HF_HUB_OFFLINE), or set HF_HOME to the cache "
                       "that has it") from None
    if not (folder / "config.json").is_file():
        raise HubError(f"the cached snapshot of {model} has no config.json, and {why}",
                       "run once online to download it (unset HF_HUB_OFFLINE)")
    source = _source(model, repo_id, revision, folder, cfg, need, wanted)
    source.info.update(files=files, offline=True)
    if need == "headers":
        source.info["safetensors_headers"] = {
            p.name: _local_header(p) for p in sorted(folder.glob("*.safetensors")) if p.is_file()}
    return source


# -- safetensors headers ----------------------------------------------------------------------------

def _local_header(path: Path) -> dict:
    from ropeconv.buffers import read_header

    return read_header(path)[0]


def _prefetch_headers(source: Source, files: dict[str, int | None]) -> None:
    shards = sorted(p for p in files if "/" not in p and p.endswith(".safetensors"))
    index = source.path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            pass  # a broken index is reported by whoever reads it; list the shards instead
    source.info["safetensors_headers"] = {name: read_safetensors_header(source, name) for name in shards}


def shard_headers(source: Source) -> dict[str, dict]:
    """{shard name: header} for every safetensors shard of a source, local or on the Hub (weights not read)."""
    names = set(source.info.get("safetensors_headers") or {})
    files = source.info.get("files") or {}
    names |= {p for p in files if "/" not in p and p.endswith(".safetensors")}
    names |= {p.name for p in Path(source.path).glob("*.safetensors") if p.is_file()}
    return {name: read_safetensors_header(source, name) for name in sorted(names)}


def read_safetensors_header(source: Source, filename: str) -> dict:
    """The JSON header of one safetensors shard, as in the file: {"__metadata__": …, name: {dtype, shape,
    data_offsets}}. Read from disk when the shard is there, else with ranged requests to the Hub at the
    source's exact sha (only the header bytes travel)."""
    local = Path(source.path) / filename
    if local.is_file():
        return _local_header(local)
    cached = source.info.get("safetensors_headers", {}).get(filename)
    if cached is not None:
        return cached
    if source.kind != "hub" or not source.repo_id:
        raise RopeconvError(f"{filename} is not in {source.path}", "pass a folder that holds its weight files")
    cfg = settings()
    if cfg.offline:
        raise HubError(f"the header of {filename} is not cached, and HF_HUB_OFFLINE is set",
                       "unset HF_HUB_OFFLINE to read it from the Hub")
    api = _api(cfg)
    with hub_errors(cfg, repo_id=source.repo_id, revision=source.sha):
        meta = with_retries(lambda: api.parse_safetensors_file_metadata(source.repo_id, filename,
                                                                        revision=source.sha))
    header: dict = {}
    if meta.metadata:
        header["__metadata__"] = dict(meta.metadata)
    for name, tensor in meta.tensors.items():
        header[name] = {"dtype": tensor.dtype, "shape": list(tensor.shape),
                        "data_offsets": list(tensor.data_offsets)}
    source.info.setdefault("safetensors_headers", {})[filename] = header
    return header


# -- small reads: a revision's sha, one JSON file ------------------------------------------------------

def revision_sha(repo_id: str, revision: str | None) -> str:
    """The commit sha `revision` (default main) of `repo_id` points at now: metadata only, nothing is
    downloaded. Offline, the sha the cache remembers for that ref."""
    cfg = settings()
    if cfg.offline:
        spec = f"{repo_id}@{revision}" if revision else repo_id
        return resolve(spec, need="config").sha
    api = _api(cfg)
    with hub_errors(cfg, repo_id=repo_id, revision=revision):
        return with_retries(lambda: api.model_info(repo_id, revision=revision)).sha


def read_repo_json(repo_id: str, filename: str, revision: str | None) -> dict | None:
    """`filename` (a small JSON object) as it is on repo_id@revision, read into a temporary folder;
    None when the repo, the revision or the file is not there, or the file is not a JSON object.
    Offline, a HubError (the question needs the Hub)."""
    import tempfile

    from huggingface_hub import errors as hf

    from ropeconv.folder import read_json_object

    cfg = settings()
    if cfg.offline:
        raise HubError(f"HF_HUB_OFFLINE is set, so {repo_id}'s {filename} cannot be read",
                       "unset HF_HUB_OFFLINE")
    api = _api(cfg)
    with tempfile.TemporaryDirectory(prefix="ropeconv-read-") as tmp:
        try:
            path = with_retries(lambda: api.hf_hub_download(repo_id, filename, revision=revision or "main",
                                                            cache_dir=tmp))
        except hf.GatedRepoError as exc:  # a subclass of RepositoryNotFoundError: an access problem, not absence
            raise hub_error(exc, cfg=cfg, repo_id=repo_id, revision=revision) from None
        except (hf.RemoteEntryNotFoundError, hf.RevisionNotFoundError, hf.RepositoryNotFoundError):
            return None
        except Exception as exc:
            raise hub_error(exc, cfg=cfg, repo_id=repo_id, revision=revision) from None
        return read_json_object(Path(path))
