"""The Hugging Face Hub: MODEL as `org/name[@revision]`, safetensors headers without the weights, and push.

`resolve()` fetches only what a command needs into huggingface_hub's cache and returns the
snapshot folder with the exact commit sha. `read_safetensors_header()` reads a shard's header with
ranged requests. `push_folder()` checks the token's rights before sending anything, creates the
repo (and branch), copies unchanged weight files server-side from the source repo when the Hub
allows it, uploads the rest and returns the commit or pull-request URL.

The environment is read at call time (HF_ENDPOINT, HF_TOKEN, HF_HOME / HF_HUB_CACHE,
HF_HUB_OFFLINE), and huggingface_hub is imported inside functions only, so `ropeconv --help`
stays fast. Calls the client does not retry itself are retried here on connection errors, 429
and 5xx, with exponential backoff (ROPECONV_HUB_RETRIES, default 5; ROPECONV_HUB_RETRY_WAIT,
the first wait in seconds, default 1). No token is ever printed, logged or written.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable, Iterator

from ropeconv.errors import HubError, RopeconvError
from ropeconv.source import Source

NEEDS = ("config", "headers", "weights")
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
# A commit answered by one of these was not applied, so retrying cannot open a second pull request.
UNAPPLIED_STATUS = (429, 503)
SMALL_FILE_LIMIT = 64 * 1024 * 1024
RECORD_NAME = "ropeconv.json"

# Small files a conversion reads or carries over (root level only; sizes capped by SMALL_FILE_LIMIT).
CONFIG_PATTERNS = ("*.json", "*.md", "*.txt", "*.jinja", "*.py", "*.model", "*.tiktoken", "*.vocab",
                   "LICENSE*", "LICENCE*", "NOTICE*", "USE_POLICY*", "COPYING*")
INDEX_PATTERNS = ("*.safetensors.index.json", "*.bin.index.json")
# Other formats of the same weights: never needed to build a transformers output folder.
OTHER_FORMAT_SUFFIXES = (".gguf", ".onnx", ".onnx_data", ".tflite", ".mlmodel", ".msgpack", ".h5", ".ot", ".nemo")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Never pushed: caches, VCS data, half-written temp files.
PUSH_IGNORE = (".git/*", ".cache/*", "*/.cache/*", ".*.tmp", "*.lock", ".DS_Store")


# -- settings ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    cache_dir: str
    offline: bool


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def settings() -> HubSettings:
    """Where the Hub is, where the cache is, and whether we may go online — from the environment now."""
    from huggingface_hub import constants

    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if not cache and os.environ.get("HF_HOME"):
        cache = os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    offline_env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    offline = _truthy(offline_env) if offline_env is not None else constants.is_offline_mode()
    return HubSettings(endpoint, cache or constants.HF_HUB_CACHE, offline)


def _api(cfg: HubSettings, token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=cfg.endpoint, token=token, library_name="ropeconv", library_version=_version())


def _version() -> str:
    from ropeconv import __version__

    return __version__


# -- retries and errors -----------------------------------------------------------------------------

def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes (the client wraps upload errors in RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:
        import httpx2 as httpx
    except ImportError:  # older huggingface_hub releases use httpx or requests
        try:
            import httpx
        except ImportError:
            import requests

            return (requests.ConnectionError, requests.Timeout)
    return (httpx.TransportError,)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _transient(exc: BaseException, statuses: tuple[int, ...] = RETRY_STATUS) -> bool:
    transport = _transport_errors()
    for link in _chain(exc):
        if isinstance(link, RopeconvError):
            return False
        if isinstance(link, transport):
            return True
        if _status(link) is not None:
            return _status(link) in statuses
    return False


def _unapplied(exc: BaseException) -> bool:
    """True when the request certainly did not reach or change the Hub (safe to repeat a PR commit)."""
    connect = _connect_errors()
    return any(isinstance(link, connect) for link in _chain(exc)) or _transient(exc, UNAPPLIED_STATUS)


def _connect_errors() -> tuple[type[BaseException], ...]:
    try:
        import httpx2 as httpx
    except ImportError:
        try:
            import httpx
        except ImportError:
            import requests

            return (requests.ConnectionError,)
    return (httpx.ConnectError, httpx.ConnectTimeout)


def retry_policy() -> tuple[int, float]:
    """(retries, first wait in seconds), from ROPECONV_HUB_RETRIES / ROPECONV_HUB_RETRY_WAIT."""
    try:
        retries = max(0, int(os.environ.get("ROPECONV_HUB_RETRIES", "5")))
    except ValueError:
        retries = 5
    try:
        wait = max(0.0, float(os.environ.get("ROPECONV_HUB_RETRY_WAIT", "1")))
    except ValueError:
        wait = 1.0
    return retries, wait


def with_retries(call: Callable[[], Any], *, retry_if: Callable[[BaseException], bool] = _transient) -> Any:
    """Run `call`; on a transient failure wait 1, 2, 4, 8, 8… × the first wait and try again."""
    retries, wait = retry_policy()
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if attempt >= retries or not retry_if(exc):
                exc.ropeconv_attempts = attempt + 1  # for the error message
                raise
            time.sleep(min(wait * 2 ** attempt, wait * 8))
            attempt += 1


def _scrub(text: str, token: str | None) -> str:
    if token and len(token) >= 4:
        text = text.replace(token, "***")
    return re.sub(r"hf_[A-Za-z0-9]{20,}", "hf_***", text)  # any token-shaped string, wherever it came from


def _login_fix(cfg: HubSettings, with_option: bool) -> str:
    option = ", or pass --token" if with_option else ""
    return f"create a token at {cfg.endpoint}/settings/tokens, then run `hf auth login` or set HF_TOKEN{option}"


def hub_error(exc: BaseException, *, cfg: HubSettings, repo_id: str | None = None, revision: str | None = None,
              action: str = "read", token: str | None = None) -> HubError:
    """One line that says what went wrong on the Hub and how to fix it."""
    from huggingface_hub import errors as hf

    attempts = getattr(exc, "ropeconv_attempts", 1)
    tried = f" (tried {attempts} times)" if attempts > 1 else ""
    where = repo_id or "the Hub"
    pushing = action == "push"
    for link in _chain(exc):
        if isinstance(link, HubError):
            return link
        if isinstance(link, hf.GatedRepoError):
            return HubError(f"{where} is gated and this account has not been granted access",
                            f"accept its conditions at {cfg.endpoint}/{repo_id}, then log in with that account "
                            "(`hf auth login` or HF_TOKEN)")
        if isinstance(link, hf.RevisionNotFoundError):
            return HubError(f"{where} has no revision '{revision}'",
                            "use an existing branch, tag or commit sha (org/name@REVISION)")
        if isinstance(link, hf.RepositoryNotFoundError):
            return HubError(f"repo {where} was not found on {cfg.endpoint} (or it is private and the token cannot "
                            "see it)", "check the name; for a private repo " + _login_fix(cfg, pushing))
        if isinstance(link, hf.RemoteEntryNotFoundError):
            return HubError(f"a file is missing from {where}@{revision or 'main'}",
                            "check that the repo holds a complete transformers model")
        if isinstance(link, hf.DisabledRepoError):
            return HubError(f"{where} has been disabled on the Hub", "use another repo")
        if isinstance(link, hf.LocalTokenNotFoundError):
            return HubError("no Hugging Face token found", _login_fix(cfg, pushing))
        if isinstance(link, hf.OfflineModeIsEnabled):
            return HubError("HF_HUB_OFFLINE is set, so the Hub cannot be contacted",
                            "unset HF_HUB_OFFLINE to go online")
        if isinstance(link, hf.FileDuplicationError):
            return HubError(f"the Hub could not copy the weight files into {where}",
                            "rerun with --no-server-copy to upload them instead")
        status = _status(link)
        if status == 401:
            return HubError("the Hub refused the token (invalid or expired)" if token or os.environ.get("HF_TOKEN")
                            else f"{where} needs a Hugging Face login", _login_fix(cfg, pushing))
        if status == 403:
            if pushing:
                return HubError(f"the token is not allowed to write to {where}",
                                f"use a token with write access to '{(repo_id or '').split('/')[0]}' "
                                f"(fine-grained tokens need repo write permission); {_login_fix(cfg, True)}")
            return HubError(f"the token is not allowed to read {where}",
                            "ask the owner for access, or " + _login_fix(cfg, False))
        if status == 429:
            return HubError(f"the Hub is rate-limiting these requests{tried}", "wait a few minutes and run it again")
        if status is not None and status >= 500:
            return HubError(f"the Hub at {cfg.endpoint} answered {status}{tried}",
                            "try again later; running the same command again resumes where it stopped")
        if status is not None:
            server = str(getattr(link, "server_message", None) or "").strip()
            message = _scrub(server.splitlines()[0], token) if server else ""
            return HubError(f"the Hub refused to {action} {where}: HTTP {status}{': ' + message if message else ''}",
                            "check the repo id and options; rerun with --debug for details")
        if isinstance(link, _transport_errors()):
            kind = type(link).__name__
            return HubError(f"cannot reach the Hub at {cfg.endpoint} ({kind}){tried}",
                            "check the network and HF_ENDPOINT; models already in the cache work offline with "
                            "HF_HUB_OFFLINE=1")
        if isinstance(link, ValueError) and "Invalid metadata in README.md" in str(link):
            detail = _scrub(str(link).splitlines()[-1].lstrip("- "), token)
            return HubError(f"the Hub rejected README.md's metadata: {detail}", "fix the YAML block of README.md")
    return HubError(f"Hub {action} failed: {_scrub(f'{type(exc).__name__}: {exc}', token).splitlines()[0]}",
                    "rerun with --debug for details")


@contextmanager
def hub_errors(cfg: HubSettings, **context) -> Iterator[None]:
    """Turn any Hub failure inside the block into a one-line HubError."""
    try:
        yield
    except RopeconvError:
        raise
    except Exception as exc:
        raise hub_error(exc, cfg=cfg, **context) from None


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
        tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
        tmp.write_text(sha)
        os.replace(tmp, ref)
    except OSError:
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
        except (ValueError, KeyError, TypeError, AttributeError):
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


# -- push -------------------------------------------------------------------------------------------

def resolve_token(explicit: str | None, cfg: HubSettings) -> str:
    """--token, else HF_TOKEN, else the stored login. The value is only ever handed to the client."""
    if explicit is not None and not explicit.strip():
        raise RopeconvError("--token is empty", "pass a token, or leave --token out to use HF_TOKEN or your login")
    if explicit:
        return explicit.strip()
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise HubError("pushing needs a Hugging Face token, and none was found", _login_fix(cfg, True))
    return token


def write_permission_problem(whoami: dict, repo_id: str, *, create_pr: bool = False) -> str | None:
    """Why this token cannot push to `repo_id`, read from /whoami-v2 — or None when it looks allowed."""
    namespace = repo_id.split("/")[0]
    user = whoami.get("name") or "this account"
    access = ((whoami.get("auth") or {}).get("accessToken") or {})
    role = access.get("role")
    if role == "read":
        return f"the token is read-only, so it cannot push to {repo_id}"
    if create_pr:  # anyone who may read the repo may open a pull request on it
        return None
    orgs = {o.get("name"): o.get("roleInOrg") for o in whoami.get("orgs") or [] if isinstance(o, dict)}
    if namespace != whoami.get("name") and namespace not in orgs:
        return f"{user} cannot write to '{namespace}': it is neither the token's user nor one of its organizations"
    if orgs.get(namespace) == "read":
        return f"{user} has only read access in the organization '{namespace}'"
    if role == "fineGrained":
        scoped = (access.get("fineGrained") or {}).get("scoped") or []
        for entry in scoped:
            entity = (entry.get("entity") or {}).get("name")
            if entity in (namespace, repo_id) and "repo.write" in (entry.get("permissions") or []):
                return None
        return f"the fine-grained token has no repo write permission on '{namespace}' or {repo_id}"
    return None


def _local_files(folder: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not _matches(rel, PUSH_IGNORE) and not rel.startswith((".git/", ".cache/")):
            out[rel] = path
    return out


def _record(folder: Path) -> dict:
    try:
        record = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _source_ref(source: Any, record: dict) -> tuple[str, str] | None:
    """(repo_id, sha) of a Hub source, from the `source` argument or the folder's ropeconv.json."""
    for candidate in (source, record.get("source")):
        if isinstance(candidate, Source):
            candidate = candidate.to_dict()
        if isinstance(candidate, dict) and candidate.get("repo_id") and candidate.get("sha"):
            if candidate.get("kind", "hub") == "hub":
                return candidate["repo_id"], candidate["sha"]
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_as_blob(path: Path, sha256: str, size: int | None, cfg: HubSettings, repo_id: str) -> bool:
    """Whether a local file holds exactly the source's LFS object (a hard link to the cached blob is
    recognised without reading it)."""
    blob = _storage_folder(cfg, repo_id) / "blobs" / sha256
    try:
        if blob.is_file() and os.path.samefile(path, blob):
            return True
        if size is not None and path.stat().st_size != size:
            return False
    except OSError:
        return False
    return _sha256(path) == sha256


@dataclass
class PushPlan:
    files: dict[str, Path]  # everything to push, by path in the repo
    copies: dict[str, tuple[str, str, str, int]]  # path -> (source repo, sha, LFS sha256, size)
    unchanged_copies: list[str]  # already in the destination: neither copied nor uploaded
    copy_note: str | None = None

    def operations(self, *, with_copies: bool = True) -> list:
        from huggingface_hub import CommitOperationAdd, CommitOperationCopy

        copies = self.copies if with_copies else {}
        ops = [CommitOperationCopy(src_path_in_repo=rel, path_in_repo=rel, src_revision=sha, src_repo_id=repo,
                                   src_repo_type="model")
               for rel, (repo, sha, _, _) in sorted(copies.items())]
        skip = set(copies) | set(self.unchanged_copies)
        ops += [CommitOperationAdd(path_or_fileobj=str(path), path_in_repo=rel)
                for rel, path in sorted(self.files.items()) if rel not in skip]
        return ops


def plan_push(api, folder: Path, repo_id: str, revision: str | None, source_ref: tuple[str, str] | None,
              cfg: HubSettings, *, server_copy: bool = True) -> PushPlan:
    """Split the folder into uploads and server-side copies of files identical to the source's LFS objects."""
    files = _local_files(folder)
    plan = PushPlan(files=files, copies={}, unchanged_copies=[])
    if not server_copy or source_ref is None:
        return plan
    src_repo, src_sha = source_ref
    big = [rel for rel, path in files.items() if path.stat().st_size > 0 and
           (rel.endswith((".safetensors", ".bin", ".pt", ".pth", ".gguf")) or path.stat().st_size >= 10 * 2 ** 20)]
    if not big:
        return plan
    from huggingface_hub.hf_api import RepoFile

    try:
        remote = [f for f in with_retries(lambda: api.get_paths_info(src_repo, big, revision=src_sha))
                  if isinstance(f, RepoFile)]
    except Exception as exc:  # the source may live on another endpoint or be gone: just upload
        plan.copy_note = f"server-side copy skipped: the source {src_repo} could not be listed ({type(exc).__name__})"
        return plan
    for item in remote:
        # The client copies across repos only for LFS files the Hub stores with a Xet hash.
        if item.lfs is None or not item.xet_hash:
            continue
        if _same_as_blob(files[item.path], item.lfs.sha256, item.lfs.size, cfg, src_repo):
            plan.copies[item.path] = (src_repo, src_sha, item.lfs.sha256, item.lfs.size)
    if plan.copies:
        _drop_copies_already_there(api, plan, repo_id, revision)
    return plan


def _drop_copies_already_there(api, plan: PushPlan, repo_id: str, revision: str | None) -> None:
    """A re-run must not commit again: skip copies whose destination already holds the same object."""
    from huggingface_hub.hf_api import RepoFile

    try:
        there = with_retries(lambda: api.get_paths_info(repo_id, sorted(plan.copies), revision=revision or "main"))
    except Exception:  # a new repo or branch has nothing yet
        return
    for item in there:
        copy = plan.copies.get(item.path)
        if isinstance(item, RepoFile) and item.lfs and copy and item.lfs.sha256 == copy[2]:
            plan.unchanged_copies.append(item.path)
            del plan.copies[item.path]


def _commit_message(folder: Path, record: dict) -> str:
    method, factor = record.get("method"), record.get("factor")
    if method and isinstance(factor, (int, float)):
        before = (record.get("before") or {}).get("original_context")
        served = record.get("served_context") or (record.get("after") or {}).get("served_context")
        span = f" ({before:,} → {served:,} tokens)" if isinstance(before, int) and isinstance(served, int) else ""
        return f"ropeconv: {method} ×{factor:g} context extension{span}"
    return f"Upload {folder.name} with ropeconv"


def _commit_description(record: dict, source_ref: tuple[str, str] | None) -> str:
    lines = [f"Made with ropeconv {record.get('ropeconv_version') or _version()}."]
    if source_ref:
        lines.append(f"Source: {source_ref[0]} at {source_ref[1]}.")
    lines.append("The weights were not changed or fine-tuned; only the RoPE configuration was rewritten.")
    return " ".join(lines) if record else "Uploaded with ropeconv."


def _check_push_args(folder: Path, repo_id: str, revision: str | None, create_pr: bool) -> None:
    if not folder.exists():
        raise RopeconvError(f"{folder} does not exist", "pass the model folder to push (e.g. an extend output)")
    if not folder.is_dir():
        raise RopeconvError(f"{folder} is not a folder", "pass the model folder to push (e.g. an extend output)")
    if not _local_files(folder):
        raise RopeconvError(f"{folder} holds no files to push", "pass the model folder to push")
    if "@" in repo_id:
        raise RopeconvError(f"the destination {repo_id!r} names a revision", "use --revision BRANCH instead of @")
    parse_model_spec(repo_id)
    if create_pr and revision not in (None, "main"):
        raise RopeconvError("--create-pr opens a pull request against main, so it cannot be combined with "
                            f"--revision {revision}", "drop --revision, or push to the branch without --create-pr")
    if revision is not None and not revision.strip():
        raise RopeconvError("--revision is empty", "name a branch, or leave --revision out to push to main")


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                create_pr: bool = False, commit_message: str | None = None, token: str | None = None,
                source: Any = None, card: bool = True, server_copy: bool = True) -> dict:
    """Push a model folder to `repo_id` (created when missing; existing is fine).

    `revision`: a branch, created from main when missing. `create_pr`: open a pull request against
    main instead. `source`: the conversion's source (a Source or its to_dict()); by default the
    folder's ropeconv.json says. With `card`, README.md is (re)written from ropeconv.json first.
    With `server_copy`, weight files identical to the Hub source's are copied server-side instead of
    uploaded. Returns a JSON-able report whose `url` is the PR URL, else the commit URL.
    Nothing local is deleted; running the same push again completes an interrupted one.
    """
    folder = Path(folder)
    _check_push_args(folder, repo_id, revision, create_pr)
    revision = revision.strip() if revision else None
    cfg = settings()
    if cfg.offline:
        raise HubError("HF_HUB_OFFLINE is set, so nothing can be pushed", "unset HF_HUB_OFFLINE and run it again")
    token = resolve_token(token, cfg)
    api = _api(cfg, token)
    context = {"cfg": cfg, "repo_id": repo_id, "revision": revision, "action": "push", "token": token}
    record = _record(folder)
    source_ref = _source_ref(source, record)
    with hub_errors(**context):
        whoami = with_retries(lambda: api.whoami(cache=False))
        problem = write_permission_problem(whoami, repo_id, create_pr=create_pr)
        if problem:
            raise HubError(problem, f"use a token with write access; {_login_fix(cfg, True)}")
        repo_url = _ensure_repo(api, repo_id, private=private, create_pr=create_pr,
                                can_create=write_permission_problem(whoami, repo_id) is None)
        if revision and revision != "main":
            with_retries(lambda: api.create_branch(repo_id, branch=revision, exist_ok=True))
    card_status = _refresh_card(folder, record, repo_id) if card else "left as is"
    with hub_errors(**context):
        plan = plan_push(api, folder, repo_id, revision, source_ref, cfg, server_copy=server_copy)
        message = commit_message or _commit_message(folder, record)
        description = _commit_description(record, source_ref)
        info, ops, used_copies = _commit(api, plan, repo_id, revision, create_pr, message, description)
    return _push_report(repo_id, repo_url, revision, create_pr, info, ops, plan, used_copies, card_status, whoami)


def _ensure_repo(api, repo_id: str, *, private: bool, create_pr: bool, can_create: bool) -> str:
    if create_pr and not can_create:  # a PR to someone else's repo: it must exist already
        with_retries(lambda: api.repo_info(repo_id))
        return f"{api.endpoint}/{repo_id}"
    return str(with_retries(lambda: api.create_repo(repo_id, private=private, exist_ok=True)))


class _QuietNoOpWarning:
    """Drops the client's 'No files have been modified' warning: the push report says it instead."""

    def filter(self, record) -> bool:
        return "No files have been modified since last commit" not in record.getMessage()


def _commit(api, plan: PushPlan, repo_id: str, revision: str | None, create_pr: bool, message: str,
            description: str):
    """create_commit with retries; when the Hub cannot copy across repos, upload those files instead."""
    from huggingface_hub.errors import FileDuplicationError, HfHubHTTPError

    retry_if = _unapplied if create_pr else _transient
    ops = plan.operations()

    def attempt(operations):
        return with_retries(lambda: api.create_commit(repo_id, operations=operations, commit_message=message,
                                                      commit_description=description, revision=revision,
                                                      create_pr=create_pr), retry_if=retry_if)

    import logging

    quiet = _QuietNoOpWarning()
    client_log = logging.getLogger("huggingface_hub.hf_api")
    client_log.addFilter(quiet)
    try:
        if not plan.copies:
            return attempt(ops), ops, False
        try:
            return attempt(ops), ops, True
        except (FileDuplicationError, HfHubHTTPError) as exc:
            response = getattr(exc, "response", None)
            url = str(getattr(getattr(response, "request", None), "url", "")) if response is not None else ""
            if not isinstance(exc, FileDuplicationError) and "/lfs-files/duplicate" not in url:
                raise
            plan.copy_note = "the Hub could not copy the weights server-side; they were uploaded instead"
            ops = plan.operations(with_copies=False)
            return attempt(ops), ops, False
    finally:
        client_log.removeFilter(quiet)


def _push_report(repo_id: str, repo_url: str, revision: str | None, create_pr: bool, info, ops, plan: PushPlan,
                 used_copies: bool, card_status: str, whoami: dict) -> dict:
    from huggingface_hub import CommitOperationAdd

    adds = [op for op in ops if isinstance(op, CommitOperationAdd)]
    unchanged = [op for op in adds if op._remote_oid is not None and op._remote_oid == op._local_oid]
    sent = [op for op in adds if op not in unchanged]
    copied = plan.copies if used_copies else {}
    no_changes = not sent and not copied
    report = {
        "repo_id": repo_id,
        "repo_url": repo_url,
        "revision": "main" if create_pr else (revision or "main"),
        "user": whoami.get("name"),
        "commit_url": info.commit_url,
        "commit_sha": info.oid,
        "pr_url": info.pr_url,
        "pr_revision": info.pr_revision,
        "url": info.pr_url or info.commit_url,
        "no_changes": no_changes,
        "uploaded": {"files": len(sent), "bytes": sum(op.upload_info.size for op in sent)},
        "copied_server_side": {"files": len(copied), "bytes": sum(c[3] for c in copied.values()),
                               "from": sorted({f"{c[0]}@{c[1]}" for c in copied.values()})},
        "unchanged": {"files": len(unchanged) + len(plan.unchanged_copies)},
        "card": card_status,
    }
    if plan.copy_note:
        report["note"] = plan.copy_note
    return report


def _refresh_card(folder: Path, record: dict, repo_id: str) -> str:
    """Write README.md from ropeconv.json (keeping the source's own card below); other folders keep theirs."""
    if not record:
        return "left as is (no ropeconv.json)"
    from ropeconv.card import write_card

    try:
        write_card(folder, repo_id=repo_id)
    except OSError as exc:
        raise RopeconvError(f"cannot write {folder / 'README.md'}: {exc.strerror or exc}",
                            "fix the folder's permissions, or pass --no-card to push README.md as it is") from None
    return "written"
