"""A small Hugging Face Hub–compatible HTTP server for the tests, and the pytest fixtures that run it.

It speaks the subset of the Hub's HTTP API that the real `huggingface_hub` client uses to read
and push model repos: whoami, repo create/info/tree/paths-info/refs, branches, the preupload and
commit endpoints (NDJSON, pull requests), the git-LFS batch API with upload + verify, the
cross-repo `lfs-files/duplicate` call behind `CommitOperationCopy`, YAML validation, and
`/resolve/` downloads with HEAD and byte ranges. Stdlib only; it binds 127.0.0.1 on port 0,
keeps its data in a temporary folder, and can be told to fail on purpose (`fail`).

Usage: import the fixtures into a test module (`from hub_server import hub_server, hub_env`) or
list this module in `pytest_plugins`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".model")
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub stores files of 10 MB and more in LFS
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class Entry:
    size: int
    sha256: str  # of the content; the content lives in the object store under this name
    lfs: bool

    @property
    def oid(self) -> str:
        """The git blob id: of the content, or of the LFS pointer file for LFS entries."""
        if self.lfs:
            return git_blob_sha1(lfs_pointer(self.sha256, self.size))
        return self._git_oid

    _git_oid: str = ""

    def tree_item(self, path: str, *, xet: bool = False) -> dict:
        item = {"type": "file", "path": path, "size": self.size, "oid": self.oid}
        if self.lfs:
            pointer = lfs_pointer(self.sha256, self.size)
            item["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(pointer)}
            if xet:  # only paths-info carries it: the downloader would otherwise try the Xet protocol
                item["xetHash"] = self.sha256
        return item


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, Entry]
    title: str


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    gated: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch or refs/pr/N -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs_objects: set[str] = field(default_factory=set)  # LFS oids this repo may reference (per repo, as on the Hub)
    prs: int = 0

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]


@dataclass
class User:
    name: str
    role: str = "write"  # "read" or "write"
    orgs: tuple[str, ...] = ()


class HubState:
    """Everything the server knows, guarded by one lock."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.objects = data_dir / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, User] = {}
        self.faults: list[list] = []  # [method, compiled path regex, remaining, status]
        self.signing_key = secrets.token_bytes(16)
        self.stats: dict[str, int] = {}
        self.log: list[tuple[str, str, int]] = []  # (method, path without query, status)
        self._counter = 0

    # -- accounts and repos ------------------------------------------------------------------
    def add_token(self, token: str, name: str, role: str = "write", orgs: tuple[str, ...] = ()) -> None:
        with self.lock:
            self.tokens[token] = User(name, role, tuple(orgs))

    def create_repo(self, repo_id: str, private: bool = False, gated: bool = False) -> Repo:
        with self.lock:
            repo = Repo(repo_id, private=private, gated=gated)
            first = self._new_commit(repo, None, {".gitattributes": self._store(GITATTRIBUTES, lfs=False)},
                                     "initial commit")
            repo.refs["main"] = first.sha
            self.repos[repo_id] = repo
            return repo

    def bump(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def fail(self, path_pattern: str, times: int, status: int = 503, method: str | None = None) -> None:
        """Answer the next `times` matching requests with `status` (then behave normally)."""
        with self.lock:
            self.faults.append([method, re.compile(path_pattern), times, status])

    def take_fault(self, method: str, path: str) -> int | None:
        with self.lock:
            for fault in self.faults:
                if fault[2] > 0 and (fault[0] in (None, method)) and fault[1].search(path):
                    fault[2] -= 1
                    return fault[3]
        return None

    # -- storage -------------------------------------------------------------------------------
    def _store(self, content: bytes, *, lfs: bool) -> Entry:
        sha256 = hashlib.sha256(content).hexdigest()
        target = self.objects / sha256
        if not target.exists():
            tmp = target.with_suffix(f".{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, target)
        return Entry(size=len(content), sha256=sha256, lfs=lfs, _git_oid="" if lfs else git_blob_sha1(content))

    def read_object(self, entry: Entry) -> bytes:
        return (self.objects / entry.sha256).read_bytes()

    def has_object(self, sha256: str) -> bool:
        return (self.objects / sha256).is_file()

    def _new_commit(self, repo: Repo, parent: str | None, files: dict[str, Entry], title: str) -> Commit:
        self._counter += 1
        seed = json.dumps([parent, sorted((p, e.sha256) for p, e in files.items()), title, self._counter])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, files, title)
        repo.commits[commit.sha] = commit
        return commit

    def resolve_revision(self, repo: Repo, revision: str) -> Commit | None:
        sha = repo.refs.get(revision) or (revision if SHA_RE.match(revision) else None)
        return repo.commits.get(sha) if sha else None

    def signature(self, *parts: str) -> str:
        return hmac.new(self.signing_key, "|".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def _repo_error(repo_id: str) -> HttpError:
    return HttpError(404, "Repository not found", "RepoNotFound")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "HubHTTPServer"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    # -- plumbing --------------------------------------------------------------------------------
    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def base_url(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _segments(self) -> list[str]:
        return [unquote(s) for s in urlsplit(self.path).path.split("/")[1:]]

    def _query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict:
        raw = self._body()
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise HttpError(400, "body is not JSON") from None

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.state.log.append((self.command, urlsplit(self.path).path, status))

    def _send_json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _user(self, required: bool = False) -> User | None:
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            if required:
                raise HttpError(401, "You must be authenticated to access this resource", None)
            return None
        user = self.state.tokens.get(auth[7:].strip())
        if user is None:
            raise HttpError(401, "Invalid credentials in Authorization header")
        return user

    def _can_read(self, repo: Repo, user: User | None) -> bool:
        return not repo.private or (user is not None and repo.namespace in (user.name, *user.orgs))

    def _can_write_namespace(self, namespace: str, user: User | None) -> bool:
        return user is not None and user.role == "write" and namespace in (user.name, *user.orgs)

    def _repo(self, repo_id: str, *, write: bool = False, pr: bool = False) -> tuple[Repo, User | None]:
        user = self._user()
        repo = self.state.repos.get(repo_id)
        if repo is None or not self._can_read(repo, user):
            raise _repo_error(repo_id)
        if write and not self._can_write_namespace(repo.namespace, user) and not (pr and user is not None):
            raise HttpError(403, f"You don't have the rights to write to {repo_id}")
        return repo, user

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = self.state.resolve_revision(repo, revision)
        if commit is None:
            raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -- dispatch --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_GET

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        self.state.bump("requests")
        try:
            fault = self.state.take_fault(self.command, path)
            if fault is not None:
                self._body()
                self.state.bump(f"faults_{fault}")
                raise HttpError(fault, "injected failure")
            self._route(self.command, self._segments())
        except HttpError as err:
            headers = dict(err.headers)
            if err.code:
                headers["X-Error-Code"] = err.code
            headers["X-Error-Message"] = err.message
            self._send_json({"error": err.message}, err.status, headers)
        except (ConnectionError, BrokenPipeError):
            pass

    def _route(self, method: str, seg: list[str]) -> None:  # noqa: C901 - a flat routing table reads best
        if method == "GET" and seg == ["api", "whoami-v2"]:
            return self.whoami()
        if method == "POST" and seg == ["api", "repos", "create"]:
            return self.create_repo()
        if method == "POST" and seg == ["api", "validate-yaml"]:
            return self.validate_yaml()
        if seg[:2] == ["api", "models"] and len(seg) >= 4:
            repo_id, rest = f"{seg[2]}/{seg[3]}", seg[4:]
            if method == "GET" and not rest:
                return self.repo_info(repo_id, "main")
            if method == "GET" and rest[0] == "revision" and len(rest) == 2:
                return self.repo_info(repo_id, rest[1])
            if method == "GET" and rest[0] == "tree" and len(rest) >= 2:
                return self.tree(repo_id, rest[1], "/".join(rest[2:]))
            if method == "GET" and rest == ["refs"]:
                return self.refs(repo_id)
            if method == "POST" and rest[0] == "paths-info" and len(rest) == 2:
                return self.paths_info(repo_id, rest[1])
            if method == "POST" and rest[0] == "preupload" and len(rest) == 2:
                return self.preupload(repo_id, rest[1])
            if method == "POST" and rest[0] == "commit" and len(rest) == 2:
                return self.commit(repo_id, rest[1])
            if method == "POST" and rest[0] == "branch" and len(rest) == 2:
                return self.create_branch(repo_id, rest[1])
            if method == "POST" and rest == ["lfs-files", "duplicate"]:
                return self.duplicate(repo_id)
        if method == "POST" and len(seg) == 6 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects",
                                                                                           "batch"]:
            return self.lfs_batch(f"{seg[0]}/{seg[1][:-4]}")
        if method == "PUT" and seg[:2] == ["__lfs", "upload"] and len(seg) == 5:
            return self.lfs_put(f"{seg[2]}/{seg[3]}", seg[4])
        if method == "POST" and seg[:2] == ["__lfs", "verify"] and len(seg) == 4:
            return self.lfs_verify(f"{seg[2]}/{seg[3]}")
        if method in ("GET", "HEAD") and len(seg) >= 5 and seg[2] == "resolve":
            return self.resolve_file(f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise HttpError(404, f"no route for {method} {urlsplit(self.path).path}")

    # -- endpoints -------------------------------------------------------------------------------
    def whoami(self) -> None:
        user = self._user(required=True)
        self._send_json({
            "type": "user", "name": user.name, "fullname": user.name,
            "orgs": [{"name": org, "roleInOrg": "write"} for org in user.orgs],
            "auth": {"type": "access_token",
                     "accessToken": {"displayName": "test token", "role": user.role}},
        })

    def create_repo(self) -> None:
        user = self._user(required=True)
        body = self._json_body()
        if body.get("type", "model") not in ("model", None):
            raise HttpError(400, "only model repos are served here")
        namespace = body.get("organization") or user.name
        repo_id = f"{namespace}/{body.get('name')}"
        url = f"{self.base_url}/{repo_id}"
        with self.state.lock:
            if repo_id in self.state.repos:
                return self._send_json({"error": "You already created this model repo", "url": url}, 409)
            if not self._can_write_namespace(namespace, user):
                raise HttpError(403, f"You don't have the rights to create a model under the namespace {namespace}")
            private = bool(body.get("private")) or body.get("visibility") == "private"
            self.state.create_repo(repo_id, private=private)
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def validate_yaml(self) -> None:
        content = self._json_body().get("content", "")
        errors = []
        if content.startswith("---"):
            try:
                import yaml

                block = content.split("---", 2)[1]
                if not isinstance(yaml.safe_load(block) or {}, dict):
                    errors.append({"message": "metadata is not a mapping"})
            except ImportError:
                pass
            except Exception as exc:  # yaml.YAMLError and friends
                errors.append({"message": f"invalid YAML: {exc}"})
        self._send_json({"errors": errors, "warnings": []}, 400 if errors else 200)

    def repo_info(self, repo_id: str, revision: str) -> None:
        repo, _ = self._repo(repo_id)
        commit = self._commit(repo, revision)
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sib = {"rfilename": path, "size": entry.size, "blobId": entry.oid}
            if entry.lfs:
                sib["lfs"] = {"size": entry.size, "sha256": entry.sha256,
                              "pointerSize": len(lfs_pointer(entry.sha256, entry.size))}
            siblings.append(sib)
        self._send_json({"id": repo_id, "modelId": repo_id, "author": repo.namespace, "sha": commit.sha,
                         "private": repo.private, "gated": "manual" if repo.gated else False,
                         "disabled": False, "tags": [], "siblings": siblings})

    def tree(self, repo_id: str, revision: str, folder: str) -> None:
        repo, _ = self._repo(repo_id)
        commit = self._commit(repo, revision)
        recursive = self._query().get("recursive", ["false"])[0].lower() in ("true", "1")
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        items, folders = [], set()
        for path, entry in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):].split("/")
            for depth in range(1, len(rest)):
                folders.add(prefix + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                items.append(entry.tree_item(path))
        if prefix and not items and not folders:
            raise HttpError(404, f"{folder} not found", "EntryNotFound")
        for name in sorted(folders):
            if recursive or "/" not in name[len(prefix):]:
                items.append({"type": "directory", "path": name, "oid": hashlib.sha1(name.encode()).hexdigest()})
        self._send_json(items)

    def refs(self, repo_id: str) -> None:
        repo, _ = self._repo(repo_id)
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.refs.items()
                    if not n.startswith("refs/")]
        self._send_json({"branches": branches, "tags": [], "converts": []})

    def paths_info(self, repo_id: str, revision: str) -> None:
        repo, _ = self._repo(repo_id)
        commit = self._commit(repo, revision)
        form = parse_qs(self._body().decode())
        out = [commit.files[p].tree_item(p, xet=True) for p in form.get("paths", []) if p in commit.files]
        self._send_json(out)

    def preupload(self, repo_id: str, revision: str) -> None:
        repo, _ = self._repo(repo_id, write=True, pr="create_pr" in self._query())
        commit = self._commit(repo, revision)
        files = []
        for item in self._json_body().get("files", []):
            path, size = item["path"], int(item["size"])
            lfs = size > 0 and (size >= LFS_THRESHOLD or path.endswith(LFS_SUFFIXES))
            existing = commit.files.get(path)
            oid = None
            if existing is not None:
                oid = existing.sha256 if existing.lfs else existing.oid
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        self._send_json({"files": files, "commitOid": commit.sha})

    def lfs_batch(self, repo_id: str) -> None:
        body = self._json_body()
        repo, _ = self._repo(repo_id, write=True, pr="ref" not in body)
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry = {"oid": oid, "size": size}
            if not (oid in repo.lfs_objects and self.state.has_object(oid)):
                sig = self.state.signature(repo_id, oid, str(size))
                base = f"{self.base_url}/__lfs"
                entry["actions"] = {
                    "upload": {"href": f"{base}/upload/{quote(repo_id, safe='/')}/{oid}?size={size}&sig={sig}"},
                    "verify": {"href": f"{base}/verify/{quote(repo_id, safe='/')}"},
                }
            objects.append(entry)
        self._send_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                        headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, repo_id: str, oid: str) -> None:
        query = self._query()
        size = query.get("size", [""])[0]
        if not hmac.compare_digest(query.get("sig", [""])[0], self.state.signature(repo_id, oid, size)):
            raise HttpError(403, "bad upload signature")
        content = self._body()
        if hashlib.sha256(content).hexdigest() != oid or str(len(content)) != size:
            raise HttpError(400, "content does not match its oid or size")
        self.state._store(content, lfs=True)
        with self.state.lock:
            self.state.repos[repo_id].lfs_objects.add(oid)
        self.state.bump("lfs_put_files")
        self.state.bump("lfs_put_bytes", len(content))
        self._send(200, b"")

    def lfs_verify(self, repo_id: str) -> None:
        repo, _ = self._repo(repo_id)
        body = self._json_body()
        if body.get("oid") not in repo.lfs_objects:
            raise HttpError(404, "object not uploaded")
        self._send_json({"ok": True})

    def duplicate(self, source_id: str) -> None:
        source, user = self._repo(source_id)
        body = self._json_body()
        target_id = (body.get("target") or {}).get("name", "")
        target = self.state.repos.get(target_id)
        if target is None or not self._can_write_namespace(target.namespace, user):
            raise HttpError(403, f"You don't have the rights to write to {target_id}")
        failed = []
        for item in body.get("files", []):
            oid = item.get("sha256")
            if oid in source.lfs_objects and self.state.has_object(oid):
                with self.state.lock:
                    target.lfs_objects.add(oid)
                self.state.bump("duplicated_files")
                self.state.bump("duplicated_bytes", (self.state.objects / oid).stat().st_size)
            else:
                failed.append({"sha256": oid, "error": "not found in source repo"})
        self._send_json({"failed": failed})

    def create_branch(self, repo_id: str, branch: str) -> None:
        repo, _ = self._repo(repo_id, write=True)
        start = self._json_body().get("startingPoint") or "main"
        with self.state.lock:
            if branch in repo.refs:
                raise HttpError(409, f"Reference already exists: refs/heads/{branch}")
            repo.refs[branch] = self._commit(repo, start).sha
        self._send_json({})

    def commit(self, repo_id: str, revision: str) -> None:
        create_pr = self._query().get("create_pr", ["0"])[0] in ("1", "true")
        repo, _ = self._repo(repo_id, write=True, pr=create_pr)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        with self.state.lock:
            base = self._commit(repo, revision)
            header = next((line["value"] for line in lines if line.get("key") == "header"), {})
            parent = header.get("parentCommit")
            if parent and parent != base.sha:
                raise HttpError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(base.files)
            for line in lines:
                self._apply(repo, files, line.get("key"), line.get("value") or {})
            new = self.state._new_commit(repo, base.sha, files, header.get("summary", ""))
            if create_pr:
                repo.prs += 1
                ref = f"refs/pr/{repo.prs}"
            else:
                ref = revision if revision in repo.refs else None
                if ref is None:
                    raise HttpError(400, "commits go to a branch")
            repo.refs[ref] = new.sha
        self.state.bump("commits")
        reply = {"commitUrl": f"{self.base_url}/{repo_id}/commit/{new.sha}", "commitOid": new.sha,
                 "success": True, "pullRequestUrl": None}
        if create_pr:
            reply["pullRequestUrl"] = f"{self.base_url}/{repo_id}/discussions/{repo.prs}"
        self._send_json(reply)

    def _apply(self, repo: Repo, files: dict[str, Entry], key: str | None, value: dict) -> None:
        if key == "file":
            files[value["path"]] = self.state._store(base64.b64decode(value["content"]), lfs=False)
        elif key == "lfsFile":
            oid = value["oid"]
            if oid not in repo.lfs_objects or not self.state.has_object(oid):
                raise HttpError(422, f"LFS object {oid} for {value['path']} was never uploaded to {repo.repo_id}")
            size = (self.state.objects / oid).stat().st_size
            files[value["path"]] = Entry(size=size, sha256=oid, lfs=True)
        elif key == "deletedFile":
            files.pop(value["path"], None)
        elif key == "deletedFolder":
            prefix = value["path"].rstrip("/") + "/"
            for path in [p for p in files if p.startswith(prefix)]:
                del files[path]

    def resolve_file(self, repo_id: str, revision: str, path: str) -> None:
        repo, user = self._repo(repo_id)
        commit = self._commit(repo, revision)
        if repo.gated and (user is None or repo.namespace not in (user.name, *user.orgs)):
            raise HttpError(403, f"Access to model {repo_id} is restricted. You must have access to it.",
                            "GatedRepo")
        entry = commit.files.get(path)
        if entry is None:
            raise HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        content = self.state.read_object(entry)
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{entry.sha256 if entry.lfs else entry.oid}"',
                   "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers["X-Linked-Size"] = str(entry.size)
        status, body = 200, content
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "") or "")
        if match and self.command == "GET" and (match.group(1) or match.group(2)):
            start = int(match.group(1) or 0)
            end = min(int(match.group(2)) if match.group(2) else len(content) - 1, len(content) - 1)
            status, body = 206, content[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        if self.command == "GET":
            self.state.bump("download_bytes", len(body))
        self._send(status, body, headers, content_type="application/octet-stream")


class HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: HubState):
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = state


@dataclass
class HubServer:
    """A running server: its URL, its state, and the tokens the fixtures created."""

    url: str
    state: HubState
    httpd: HubHTTPServer
    write_token: str
    read_token: str
    user: str = "alice"
    org: str = "ropeconv-org"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def upload(self, folder: Path, repo_id: str, token: str | None = None, **create) -> str:
        """Create `repo_id` and upload `folder` with the real client; returns the commit sha."""
        return upload_folder_as(self, folder, repo_id, token, **create)


def start_server(data_dir: Path) -> HubServer:
    state = HubState(data_dir)
    write_token, read_token = f"hf_w{secrets.token_hex(12)}", f"hf_r{secrets.token_hex(12)}"
    state.add_token(write_token, "alice", "write", orgs=("ropeconv-org",))
    state.add_token(read_token, "bob", "read")
    httpd = HubHTTPServer(state)
    threading.Thread(target=httpd.serve_forever, name="hub-server", daemon=True).start()
    host, port = httpd.server_address[:2]
    return HubServer(f"http://{host}:{port}", state, httpd, write_token, read_token)


@dataclass
class HubEnv:
    server: HubServer
    url: str
    token: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a subprocess needs to talk to this server (and nothing else)."""
        out = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        out.update(HF_ENDPOINT=self.url, HF_TOKEN=self.token, HF_HOME=str(self.home),
                   HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", ROPECONV_HUB_RETRY_WAIT="0.05")
        out.update(extra)
        return out


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("hub-server-data"))
    yield server
    server.stop()


@pytest.fixture
def hub_env(hub_server, monkeypatch, tmp_path):
    """Point huggingface_hub (and ropeconv) at the test server, with a fresh HF_HOME per test."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    home.mkdir()
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    monkeypatch.setenv("HF_TOKEN", hub_server.write_token)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("ROPECONV_HUB_RETRY_WAIT", "0.05")  # keep retry tests fast
    # huggingface_hub reads these once at import; the test process imported it already.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    yield HubEnv(hub_server, hub_server.url, hub_server.write_token, home)
    hub_server.state.faults.clear()  # a failure planned by one test never leaks into the next


# -- a source model on the server ----------------------------------------------------------------

SOURCE_REPO = "alice/tiny-llama"
SOURCE_CARD = """---
license: apache-2.0
pipeline_tag: text-generation
language:
- en
---
# Tiny Llama

A tiny random Llama for tests. Its own card text must survive under the ropeconv card.
"""


def build_tiny_model(folder: Path) -> Path:
    """A tiny random Llama (save_pretrained), with a weights file over 10 MB so it travels through LFS,
    a tokenizer_config.json, a 10.5 MB tokenizer.json (LFS by size alone) and a card."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=24000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder)
    (folder / "README.md").write_text(SOURCE_CARD, encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}), encoding="utf-8")
    filler = {"version": "1.0", "padding": "x" * (10 * 1024 * 1024 + 512 * 1024)}
    (folder / "tokenizer.json").write_text(json.dumps(filler), encoding="utf-8")
    return folder


def upload_folder_as(server: HubServer, folder: Path, repo_id: str, token: str | None = None, **create) -> str:
    """Create `repo_id` and upload `folder` with the real client; returns the commit sha."""
    from huggingface_hub import HfApi, constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_DISABLE_XET", True)
        mp.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        api = HfApi(endpoint=server.url, token=token or server.write_token)
        api.create_repo(repo_id, exist_ok=True, **create)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="add model").oid


@pytest.fixture(scope="session")
def hub_source(hub_server, tmp_path_factory):
    """(repo_id, commit sha, local folder) of a tiny model already on the server."""
    folder = build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
    sha = upload_folder_as(hub_server, folder, SOURCE_REPO)
    return SOURCE_REPO, sha, folder
