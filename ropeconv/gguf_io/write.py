"""Writing the planned GGUF file: where it goes, the streamed copy, the check and the atomic rename.

`write_gguf` builds the output in a temporary file beside the destination, reads it back (`_verify`) and
renames it into place; `write_stream` writes header, metadata and tensor infos, then copies tensor data
from the source in CHUNK-sized reads (never more than one chunk in memory).
"""

from __future__ import annotations

import fcntl
import math
import os
from glob import escape as glob_escape
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Protocol

from ropeconv.errors import RopeconvError
from ropeconv.gguf_io.read import GgufInfo, open_gguf, spec_from_metadata
from ropeconv.output import default_gguf_output, terminate_as_interrupt


class GgufPlan(Protocol):
    """What a copy changes, as the GGUF adapter (`ropeconv.formats.gguf.GgufPlan`) plans it: metadata
    set (key -> (GGUFValueType, value)) or dropped, rope tensors added or dropped, and the RoPE
    description the written file must read back as."""

    set_kv: dict[str, tuple[int, Any]]
    drop_kv: set[str]
    add_tensors: dict[str, list[float]]
    drop_tensors: set[str]
    after: Any


CHUNK = 8 << 20  # bytes copied per read


# ---------------------------------------------------------------------------------------------------------
# the destination


# `default_output` is kept under the name gguf_io always exported; both rules live in ropeconv.output.
default_output = default_gguf_output


# ---------------------------------------------------------------------------------------------------------
# writing


def _encode_str(text: str | bytes, e: str) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack(e + "Q", len(data)) + data


def _encode_kv(key: str, vtype: int, value: Any, e: str) -> bytes:
    from gguf import GGUFValueType as T

    formats = {T.UINT8: "B", T.INT8: "b", T.UINT16: "H", T.INT16: "h", T.UINT32: "I", T.INT32: "i",
               T.FLOAT32: "f", T.UINT64: "Q", T.INT64: "q", T.FLOAT64: "d", T.BOOL: "?"}
    out = _encode_str(key, e) + struct.pack(e + "I", vtype)
    if T(vtype) == T.STRING:
        return out + _encode_str(value, e)
    if T(vtype) in (T.FLOAT32, T.FLOAT64) and not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise RopeconvError(f"{key} would be {value!r}, which is not a finite number", "check the options given")
    try:
        packed = struct.pack(e + formats[T(vtype)], value)
    except (struct.error, OverflowError, TypeError):
        raise RopeconvError(f"{key} = {value!r} does not fit the file's {T(vtype).name} field",
                            "pass a realistic value") from None
    if T(vtype) == T.FLOAT32 and not math.isfinite(struct.unpack(e + "f", packed)[0]):
        raise RopeconvError(f"{key} = {value!r} is too large for the file's FLOAT32 field", "pass a realistic value")
    return out + packed


def _read_exact(src, offset: int, size: int) -> bytes:
    src.seek(offset)
    data = src.read(size)
    if len(data) != size:
        raise RopeconvError(f"{src.name} ended early while copying (truncated)", "download or convert it again")
    return data


def _pad(n: int, align: int) -> int:
    return (align - n % align) % align


def write_gguf(info: GgufInfo, plan: GgufPlan, dest: Path, progress: Callable[[int], None] | None = None) -> int:
    """Write the planned file to `dest`: a temporary file beside it, checked, then renamed. Returns its size."""
    umask = os.umask(0)
    os.umask(umask)
    with terminate_as_interrupt():
        return _write_gguf(info, plan, dest, umask, progress)


def _write_gguf(info: GgufInfo, plan: GgufPlan, dest: Path, umask: int,
                progress: Callable[[int], None] | None) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)  # missing parents are created, as for folder outputs
    _remove_stale_temps(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".ropeconv-tmp", dir=dest.parent)
    lock = os.open(tmp_name, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until renamed: a later run sees the file is live
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            write_stream(info, plan, out, progress=progress)
            out.flush()
            os.fsync(out.fileno())
        _verify(tmp, info, plan)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise RopeconvError(f"cannot write {dest}: {exc.strerror or exc}",
                                "check free space and permissions, or choose another -o") from None
        raise
    finally:
        os.close(lock)
    return dest.stat().st_size


def _remove_stale_temps(dest: Path) -> None:
    """Remove `.NAME.*.ropeconv-tmp` files a killed run left beside `dest` (a live run holds a lock on its own)."""
    for path in dest.parent.glob(f".{glob_escape(dest.name)}.*.ropeconv-tmp"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)


def write_stream(info: GgufInfo, plan: GgufPlan, out: Any, progress: Callable[[int], None] | None = None) -> None:
    """Write the new file to the binary stream `out`: header, metadata, tensor infos, then tensor data
    copied from the source in CHUNK-sized reads (never more than one chunk in memory)."""
    import numpy as np
    from gguf import GGMLQuantizationType

    e, align = info.endian, info.alignment
    with open(info.path, "rb") as src:
        kv_blobs: list[bytes] = []
        for fld in info.fields:
            if fld.name in plan.drop_kv:
                continue
            if fld.name in plan.set_kv:
                kv_blobs.append(_encode_kv(fld.name, *plan.set_kv[fld.name], e))
            else:  # copied byte for byte: types and values exactly as they were
                kv_blobs.append(_read_exact(src, fld.offset, fld.size))
        present = {fld.name for fld in info.fields}
        for key, (vtype, value) in plan.set_kv.items():
            if key not in present:
                kv_blobs.append(_encode_kv(key, vtype, value, e))

        entries = []  # (tensor-info bytes without the offset, nbytes, source offset or the new tensor's bytes)
        for t in info.tensors:
            if t.name in plan.drop_tensors:
                continue
            entries.append((_read_exact(src, t.info_offset, t.info_size - 8), t.n_bytes, t.data_offset))
        for name, values in plan.add_tensors.items():
            data = np.asarray(values, dtype=np.dtype(np.float32).newbyteorder(e)).tobytes()
            ti = (_encode_str(name, e) + struct.pack(e + "I", 1) + struct.pack(e + "Q", len(values))
                  + struct.pack(e + "I", int(GGMLQuantizationType.F32)))
            entries.append((ti, len(data), data))

        pos = 0

        def emit(data) -> None:
            nonlocal pos
            out.write(data)
            pos += len(data)

        emit(_read_exact(src, 0, 4))  # magic
        emit(struct.pack(e + "I", info.version))
        emit(struct.pack(e + "Q", len(entries)))
        emit(struct.pack(e + "Q", len(kv_blobs)))
        for blob in kv_blobs:
            emit(blob)
        offset = 0
        for ti, nbytes, _ in entries:
            emit(ti + struct.pack(e + "Q", offset))
            offset += nbytes + _pad(nbytes, align)
        emit(b"\0" * _pad(pos, align))

        buf = bytearray(CHUNK)
        view = memoryview(buf)
        for _, nbytes, origin in entries:
            if isinstance(origin, bytes):
                emit(origin)
            else:
                src.seek(origin)
                left = nbytes
                while left:
                    got = src.readinto(view[:min(CHUNK, left)])
                    if not got:
                        raise RopeconvError(f"{info.path} ended early while copying tensor data (truncated)",
                                            "download or convert it again")
                    emit(view[:got])
                    left -= got
                    if progress:
                        progress(got)
            emit(b"\0" * _pad(nbytes, align))


def _verify(tmp: Path, info: GgufInfo, plan: GgufPlan) -> None:
    """The written file must read back: every tensor, the planned metadata and RoPE description. Read with
    the same metadata scan as any input (the vocabulary is skipped, not materialised)."""
    try:
        written = open_gguf(tmp)
    except RopeconvError as exc:
        raise AssertionError(f"the written GGUF does not read back: {exc}") from None
    src = {t.name: t for t in info.tensors if t.name not in plan.drop_tensors}
    got = {t.name: t for t in written.tensors}
    if set(got) != set(src) | set(plan.add_tensors):
        raise AssertionError("the written GGUF has a different tensor list than planned")
    for name, t in src.items():
        g = got[name]
        if g.type_id != t.type_id or g.n_bytes != t.n_bytes or g.shape != t.shape:
            raise AssertionError(f"tensor {name} was written with a different type or shape")
    after = spec_from_metadata(written.arch, written.kv, written.rope_tensors)
    if after.to_dict() != plan.after.to_dict():
        raise AssertionError("the written GGUF reads back a different RoPE description than planned")
