"""Writing an output model folder: the one place that touches the destination.

Everything is built in a temporary folder beside the destination and renamed into place at the
end, so a failure leaves nothing under the destination name and the source is never modified.
Unchanged files are hard-linked (copied where linking is impossible, or with copy=True).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ropeconv.errors import RopeconvError

SKIP_NAMES = {".cache", ".git", ".gitattributes.lock"}


@dataclass
class FilePlan:
    """What to put in the output besides the source's files as they are."""

    json_files: dict[str, dict] = field(default_factory=dict)  # relative name -> new content
    shard_writers: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # name -> write(dst)
    dropped: set[str] = field(default_factory=set)  # source files not to carry over


@dataclass
class WriteReport:
    linked: int = 0
    copied: int = 0
    rewritten: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"linked": self.linked, "copied": self.copied, "rewritten": self.rewritten}


def json_indent(path: Path) -> int | str | None:
    """The indentation a JSON file uses (None for a one-line file, "\t" for tabs), so a patched
    file looks like its source."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 2
    if len(lines) <= 1:
        return None
    for line in lines[1:3]:
        stripped = line.lstrip(" \t")
        if stripped and stripped != line:
            prefix = line[: len(line) - len(stripped)]
            return "\t" if prefix.startswith("\t") else len(prefix)
    return 2


def dump_json(obj: dict, indent: int | str | None = 2) -> str:
    if indent is None:
        return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")) + "\n"
    return json.dumps(obj, indent=indent, ensure_ascii=False) + "\n"


def write_text_atomic(path: Path, text: str) -> None:
    """Write one file into an existing folder by temp + rename: never half-written, and a hard link
    at `path` (e.g. into the Hub cache) is replaced rather than modified."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise _os_error(exc, path) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: dict, indent: int | None = 2) -> None:
    write_text_atomic(path, dump_json(obj, indent))


def check_destination(source: Path | None, dest: Path, force: bool) -> None:
    dest_abs = dest.resolve()
    if source is not None:
        src_abs = source.resolve()
        if dest_abs == src_abs or src_abs in dest_abs.parents:
            raise RopeconvError(f"the output {dest} is inside the source folder", "choose an output outside it with -o")
    if dest.exists() and not force:
        if not dest.is_dir() or any(dest.iterdir()):
            raise RopeconvError(f"{dest} already exists", "choose another -o, or pass --force to replace it")
    parent = dest_abs.parent
    if not parent.is_dir():
        raise RopeconvError(f"the output's parent folder {parent} does not exist", "create it or choose another -o")
    if not os.access(parent, os.W_OK):
        raise RopeconvError(f"cannot write into {parent}: permission denied", "choose another -o")


def write_model(source: Path, dest: Path, plan: FilePlan, *, force: bool = False, copy: bool = False,
                advance: Callable[[int], None] | None = None) -> WriteReport:
    """Build `dest` from `source` plus `plan`, atomically."""
    check_destination(source, dest, force)
    dest = dest.absolute()
    tmp = make_temp_dir(dest.parent, f".{dest.name}.ropeconv-tmp-")
    report = WriteReport()
    try:
        for rel in _source_files(source):
            if rel in plan.dropped or rel in plan.json_files:
                continue
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel in plan.shard_writers:
                plan.shard_writers[rel](target)
                report.rewritten.append(rel)
            elif not copy and _try_link((source / rel).resolve(), target):
                report.linked += 1
            else:
                shutil.copyfile((source / rel).resolve(), target)
                report.copied += 1
            if advance:
                advance(1)
        for rel, content in plan.json_files.items():
            original = source / rel
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(dump_json(content, json_indent(original) if original.exists() else 2),
                                   encoding="utf-8")
        _move_into_place(tmp, dest, force)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _os_error(exc, dest) from None
        raise
    return report


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A temporary folder beside where its content will be renamed to, with ordinary permissions
    (mkdtemp makes it private, and the rename would carry that over)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _source_files(source: Path) -> list[str]:
    files = []
    for root, dirs, names in os.walk(source, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_NAMES)
        for name in sorted(names):
            path = Path(root) / name
            if name in SKIP_NAMES or not path.exists():  # broken links are not carried
                continue
            files.append(path.relative_to(source).as_posix())
    return files


def _try_link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:  # other filesystem, no permission, or links unsupported: copy instead
        return False


def _move_into_place(tmp: Path, dest: Path, force: bool) -> None:
    old = None
    if dest.exists() or dest.is_symlink():
        if dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
        elif force:
            old = dest.with_name(f".{dest.name}.ropeconv-old-{uuid.uuid4().hex[:8]}")
            os.replace(dest, old)
        else:  # appeared while we were writing
            raise RopeconvError(f"{dest} already exists", "choose another -o, or pass --force to replace it")
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def _os_error(exc: OSError, where: Path) -> RopeconvError:
    if exc.errno == errno.ENOSPC:
        return RopeconvError(f"disk full while writing {where}", "free space there or choose another -o")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return RopeconvError(f"permission denied while writing {where}", "choose another -o or fix permissions")
    return RopeconvError(f"could not write {where}: {exc.strerror or exc}", "check the destination")
