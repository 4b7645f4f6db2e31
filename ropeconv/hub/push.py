"""Pushing a model folder to the Hub: the token and its write rights, the push plan (uploads and
server-side copies of weight files unchanged from the Hub source), the commit and its report.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ropeconv.record import RECORD_NAME, read_folder_record_json
from ropeconv.request import RequestError
from ropeconv.errors import HubError, RopeconvError
from ropeconv.hub.client import (HubSettings, _api, _login_fix, _transient, _unapplied, _version, hub_errors,
                                 settings, with_retries)
from ropeconv.hub.sources import _matches, _storage_folder, parse_model_spec
from ropeconv.folder import Source, confined

# Never pushed: caches, VCS data, half-written temp files.
PUSH_IGNORE = (".git/*", ".cache/*", "*/.cache/*", ".*.tmp", "*.lock", ".DS_Store")


def resolve_token(explicit: str | None, cfg: HubSettings) -> str:
    """--token, else HF_TOKEN, else the stored login. The value is only ever handed to the client."""
    if explicit is not None and not explicit.strip():
        raise RequestError("token", "{name} is empty", "pass a token, or leave {name} out to use HF_TOKEN or your login")
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


# Files that record where things were on this machine (source folder, probe text, cache paths):
# what is pushed carries folder names, never local absolute paths (they name users' homes).
LOCAL_RECORDS = (RECORD_NAME, "probe.json", "tune.json", "finetune.json")


def _public_bytes(path: Path) -> bytes:
    """A record file's content with every local absolute path reduced to its last component."""
    def scrub(value):
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, str) and value.startswith("/") and len(value) > 1:
            return Path(value).name
        if isinstance(value, str) and value.startswith("sqlite:////"):  # tune.json's study storage
            return "sqlite:///" + Path(value.removeprefix("sqlite:///")).name
        return value

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return path.read_bytes()
    from ropeconv.output import dump_json

    return dump_json(scrub(data)).encode("utf-8")


def _local_files(folder: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not _matches(rel, PUSH_IGNORE) and not rel.startswith((".git/", ".cache/")):
            confined(folder, rel)  # a link out of the folder is refused, never uploaded
            out[rel] = path
    return out


def _record(folder: Path) -> dict:
    return read_folder_record_json(folder) or {}


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
        ops += [CommitOperationAdd(path_or_fileobj=_public_bytes(path) if rel in LOCAL_RECORDS else str(path),
                                   path_in_repo=rel)
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
    _check_destination_args(repo_id, revision, create_pr)


def _check_destination_args(repo_id: str, revision: str | None, create_pr: bool) -> None:
    if "@" in repo_id:
        raise RequestError("revision", f"the destination {repo_id!r} names a revision", "use {name} BRANCH instead of @")
    parse_model_spec(repo_id)
    if create_pr and revision not in (None, "main"):
        raise RequestError("create_pr", "{name} opens a pull request against main, so it cannot be combined with "
                           "{name:revision} " f"{revision}", "drop {name:revision}, or push to the branch without {name}")
    if revision is not None and not revision.strip():
        raise RequestError("revision", "{name} is empty", "name a branch, or leave {name} out to push to main")


def check_push_possible(repo_id: str, *, token: str | None = None, revision: str | None = None,
                        create_pr: bool = False) -> None:
    """What push_folder would refuse before sending anything (arguments, offline, token, write rights),
    checked up front by commands that push only after long work (`tune --push-to`)."""
    _check_destination_args(repo_id, revision, create_pr)
    cfg = settings()
    if cfg.offline:
        raise HubError("HF_HUB_OFFLINE is set, so nothing can be pushed", "unset HF_HUB_OFFLINE and run it again")
    token = resolve_token(token, cfg)
    api = _api(cfg, token)
    with hub_errors(cfg=cfg, repo_id=repo_id, revision=revision, action="push", token=token):
        whoami = with_retries(lambda: api.whoami(cache=False))
        problem = write_permission_problem(whoami, repo_id, create_pr=create_pr)
    if problem:
        raise HubError(problem, f"use a token with write access; {_login_fix(cfg, True)}")


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
        raise RequestError("no_card", f"cannot write {folder / 'README.md'}: {exc.strerror or exc}",
                           "fix the folder's permissions, or pass {name} to push README.md as it is") from None
    return "written"
