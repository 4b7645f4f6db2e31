"""Writing an output model folder: the one place that touches the destination.

Everything is built in a temporary folder beside the destination and renamed into place at the
end, so a failure leaves nothing under the destination name and the source is never modified.
Unchanged files are hard-linked (copied where linking is impossible, or with copy=True).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ropeconv.errors import RopeconvError
from ropeconv.folder import Source, confined, model_files
from ropeconv.request import RequestError

# Never carried into an output: VCS and cache folders (at any depth), ropeconv's own cache marker,
# and files that describe the source rather than the output (at the top level).
SKIP_NAMES = {".cache", ".git", ".gitattributes.lock", ".ropeconv-complete"}
SKIP_AT_ROOT = {"probe.json", "tune.json", "tune.png", "finetune.json", "finetune.png"}  # measurements of that folder, not of a new output
TMP_MARK = ".ropeconv-tmp-"
OLD_MARK = ".ropeconv-old-"


@dataclass
class FilePlan:
    """What to put in the output besides the source's files as they are."""

    json_files: dict[str, dict] = field(default_factory=dict)  # relative name -> new content
    shard_writers: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # name -> write(dst)
    dropped: set[str] = field(default_factory=set)  # source files not to carry over
    # measurements made of this very output and staged beside it (finetune.png): carried although their
    # names are in SKIP_AT_ROOT, which keeps a source's measurements out of a new output
    own_measurements: set[str] = field(default_factory=set)


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
        with contextlib.suppress(OSError):  # on a read-only mount the clean-up fails too: the first error is the one to say
            tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: dict, indent: int | None = 2) -> None:
    write_text_atomic(path, dump_json(obj, indent))


def default_output_name(name: str, method: str, factor: float) -> str:
    """The output's name when none is given: `<source name>-<method>-x<factor>`."""
    return f"{name or 'model'}-{method}-x{factor:g}"


# ---------------------------------------------------------------------------------------------------
# default destinations: every command's output name when -o is not given, in one place


def _source_name(source: Source) -> str:
    return source.repo_id.split("/")[-1] if source.repo_id else source.path.name


def _beside(source: Source, name: str) -> Path:
    """A local source's output goes beside it; a Hub source's into the working folder."""
    return Path(name) if source.kind == "hub" else source.path.absolute().parent / name


def default_output(source: Source, method: str, factor: float) -> Path:
    """Where `extend` writes a model folder when no -o is given."""
    return _beside(source, default_output_name(_source_name(source), method, factor))


def default_tuned_output(source: Source, method: str, target: int) -> Path:
    """Where `tune` writes its winner when no -o is given: `<name>-tuned-<method>-<target, in k>`."""
    size = f"{target // 1024}k" if target % 1024 == 0 else str(target)
    return _beside(source, f"{_source_name(source) or 'model'}-tuned-{method}-{size}")


def default_gguf_output(path: Path, method: str, factor: float) -> Path:
    """Where `extend` writes a GGUF file when no -o is given: beside the source, `.gguf` kept."""
    return path.absolute().parent / f"{default_output_name(path.stem, method, factor)}.gguf"


def gguf_destination(src: Path, output: str | Path | None, method: str, factor: float, force: bool) -> Path:
    """The GGUF file `extend` writes: -o as given (a folder gets the default name inside), refused when it
    is a link, not .gguf, the source itself, an existing file without `force`, or not writable."""
    if output is None:
        dest = default_gguf_output(src, method, factor)
    else:
        dest = Path(output).expanduser()
        if dest.is_dir():
            dest = dest / default_gguf_output(src, method, factor).name
    if dest.is_symlink():
        raise RopeconvError(f"the output {dest} is a symbolic link; ropeconv does not write through links",
                            "pass the real file path as -o, or remove the link")
    dest = dest.absolute()
    if dest.suffix != ".gguf":
        raise RopeconvError(f"the output {dest.name} does not end in .gguf",
                            f"choose a name ending in .gguf, e.g. {default_gguf_output(src, method, factor).name}")
    if dest.resolve() == src.resolve() or (dest.exists() and os.path.samefile(dest, src)):
        raise RopeconvError(f"the output {dest} is the source file", "choose another -o: the source is never modified")
    if dest.exists() and not force:
        raise RequestError("force", f"{dest} already exists", "choose another -o, or {on} to replace it")
    if dest.exists() and not dest.is_file():
        raise RopeconvError(f"{dest} exists and is not a file", "choose another -o")
    ancestor = next(p for p in [dest.parent, *dest.parent.parents] if p.exists())
    if not ancestor.is_dir():
        raise RopeconvError(f"the output's parent {ancestor} is a file, not a folder", "choose another -o")
    if not os.access(ancestor, os.W_OK):
        raise RopeconvError(f"cannot write into {dest.parent}: permission denied", "choose another -o")
    return dest



def check_destination(source: Path | None, dest: Path, force: bool) -> None:
    """Refuse a destination that cannot be written safely, before anything is computed or written.

    Refused even with force: the source itself, an output inside the source, an output that contains
    the source (replacing it would delete the model), a regular file (--force replaces only a folder),
    and a symbolic link (ropeconv does not write through links).
    """
    if any(ord(c) < 32 for c in str(dest)):
        raise RopeconvError(f"the output path {str(dest)!r} holds control characters", "choose a plain -o path")
    dest_abs = dest.absolute()
    if dest.is_symlink():
        raise RopeconvError(f"the output {dest} is a symbolic link (to {os.readlink(dest)}); ropeconv does not "
                            "write through links", "pass the real folder as -o, or remove the link")
    if source is not None:
        src_abs = source.resolve()
        dest_real = dest.resolve()
        if dest_real == src_abs or src_abs in dest_real.parents:
            raise RopeconvError(f"the output {dest} is inside the source folder", "choose an output outside it with -o")
        if dest_real in src_abs.parents or dest_real in source.absolute().parents:
            raise RopeconvError(f"the output {dest} contains the source {source}: replacing it would delete the model",
                                "choose an output folder that does not contain the model (e.g. a new folder beside it)")
    if dest.exists() and not dest.is_dir():
        raise RequestError("force", f"{dest} is a file, not a folder; " "{name} replaces only an output folder",
                           "choose another -o (a folder name)")
    if dest.exists() and not force and any(dest.iterdir()):
        raise RequestError("force", f"{dest} already exists", "choose another -o, or {on} to replace it")
    ancestor = next((p for p in [dest_abs.parent, *dest_abs.parent.parents] if p.exists()), Path("/"))
    if not ancestor.is_dir():
        raise RopeconvError(f"the output's parent {ancestor} is a file, not a folder", "choose another -o")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RopeconvError(f"cannot write into {ancestor}: permission denied", "choose another -o")


def write_model(source: Path, dest: Path, plan: FilePlan, *, force: bool = False, copy: bool = False,
                advance: Callable[[int], None] | None = None) -> WriteReport:
    """Build `dest` from `source` plus `plan`, atomically: in a temporary folder beside `dest`, renamed
    into place at the end. On any failure, SIGINT or SIGTERM, the temporary folder is removed; a run
    killed outright leaves it, and the next run to the same destination removes it."""
    check_destination(source, dest, force)
    files = [rel for rel in model_files(source, SKIP_NAMES)
             if rel not in plan.dropped and rel not in plan.json_files
             and (rel not in SKIP_AT_ROOT or rel in plan.own_measurements)]
    before = {rel: _stamp(source / rel) for rel in files}
    dest = dest.absolute()
    created = make_parents(dest.parent)
    remove_leftovers(dest)
    report = WriteReport()
    tmp = None
    try:
        with terminate_as_interrupt():
            tmp = make_temp_dir(dest.parent, f".{dest.name}{TMP_MARK}")
            lock = hold(tmp)
            try:
                for rel in files:
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    real = confined(source, rel)
                    if rel in plan.shard_writers:
                        _rewrite(plan.shard_writers[rel], target, rel)
                        report.rewritten.append(rel)
                    elif not copy and _try_link(real, target):
                        report.linked += 1
                    else:
                        shutil.copyfile(real, target)
                        report.copied += 1
                    if rel.endswith(".safetensors") and rel not in plan.shard_writers:
                        _check_shard_size(target, rel)
                    if advance:
                        advance(1)
                for rel, content in plan.json_files.items():
                    original = source / rel
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / rel).write_text(dump_json(content, json_indent(original) if original.exists() else 2),
                                           encoding="utf-8")
                changed = [rel for rel in files if _stamp(source / rel) != before[rel]]
                if changed:
                    raise RopeconvError(f"the source changed while it was being copied ({changed[0]}"
                                        f"{f' and {len(changed) - 1} more' if len(changed) > 1 else ''})",
                                        "run again when nothing else is writing to the model folder")
                move_into_place(tmp, dest, force)
            finally:
                os.close(lock)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):  # parents made for this output, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):
            raise _os_error(exc, dest) from None
        raise
    return report


def _rewrite(writer: Callable[[Path], None], target: Path, rel: str) -> None:
    """Run a shard writer. It reads a file the user gave: a reader's own exception (torch's for a damaged
    .bin, a ValueError for a malformed tensor) means a bad shard, reported as one line, not a bug."""
    try:
        writer(target)
    except (RopeconvError, OSError, MemoryError):
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RequestError("buffers", f"{rel} could not be read to rewrite its rotary buffers ({type(exc).__name__}: {first})",
                           "re-download or re-save that shard, or pass {name} keep") from None


def remove_leftovers(dest: Path) -> list[Path]:
    """Remove what a killed run to `dest` left beside it (`.NAME.ropeconv-tmp-*`, `.NAME.ropeconv-old-*`),
    skipping any still held by a live run (each run holds a lock on its folder)."""
    removed = []
    parent, prefixes = dest.parent, (f".{dest.name}{TMP_MARK}", f".{dest.name}{OLD_MARK}")
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefixes):
            continue
        path = Path(entry.path)
        if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
            continue
        with try_hold(path) as held:
            if held:  # not a live run's: ours while we remove it
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


@contextlib.contextmanager
def try_hold(folder: Path):
    """Try to lock `folder` without waiting: yields True (held by us until the block ends), False (a live
    run holds it) or None (it cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


def hold(folder: Path) -> int:
    """Lock a folder for the life of this run (released by the kernel when the process dies)."""
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _check_shard_size(path: Path, rel: str) -> None:
    """A copied or linked safetensors shard must be as long as its header says (a shard truncated or
    still being written must not land under the final name)."""
    from ropeconv.buffers import expected_size

    actual = path.stat().st_size
    wanted = expected_size(path)
    if actual != wanted:
        raise RopeconvError(f"{rel} has {actual} bytes but its header needs {wanted} (truncated or changed while "
                            "being copied)", "re-download or re-save that shard, and run again")


def make_parents(folder: Path) -> list[Path]:
    """Create the missing parents of the output (as `mkdir -p`); returns those created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise _os_error(exc, path) from None
        created.append(path)
    return created


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM is handled like Ctrl-C while writing: the temporary folder is removed, one line is printed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt("terminated")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def _try_link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:  # other filesystem, no permission, or links unsupported: copy instead
        return False


def move_into_place(tmp: Path, dest: Path, force: bool) -> None:
    old, old_lock = None, None
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):  # appeared while we were writing
        raise RopeconvError(f"{dest} appeared as a file or link while ropeconv was writing", "choose another -o")
    if dest.exists():
        if not any(dest.iterdir()):
            with contextlib.suppress(OSError):
                dest.rmdir()
        elif force:
            old = dest.with_name(f".{dest.name}{OLD_MARK}{uuid.uuid4().hex[:8]}")
            old_lock = hold(dest)  # so a concurrent run does not take it for a leftover
            os.replace(dest, old)
        else:  # appeared while we were writing
            raise RequestError("force", f"{dest} already exists", "choose another -o, or {on} to replace it")
    try:
        os.replace(tmp, dest)
    except OSError as exc:
        if old is not None:  # put the previous output back
            with contextlib.suppress(OSError):
                os.replace(old, dest)
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another run finished first
            raise RequestError("force", f"{dest} was written by another run while this one was writing",
                               "choose another -o, or {on} to replace it") from None
        raise
    finally:
        if old_lock is not None:
            os.close(old_lock)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _os_error(exc: OSError, where: Path) -> RopeconvError:
    if exc.errno == errno.ENOSPC:
        return RopeconvError(f"disk full while writing {where}", "free space there or choose another -o")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return RopeconvError(f"permission denied while writing {where}", "choose another -o or fix permissions")
    return RopeconvError(f"could not write {where}: {exc.strerror or exc}", "check the destination")
