"""Stored rotary buffers: found from safetensors headers alone, rewritten by streaming a shard.

Checkpoints saved by transformers ≤ 4.31, GPT-NeoX/Pythia and some remote code carry
`*rotary_emb.inv_freq` (and sometimes `cos_cached`/`sin_cached`). Modern transformers ignores
them; TGI and persistent-buffer remote code read them. A shard is only ever read whole when one
of its tensors must change, and then it is streamed, never held in memory.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ropeconv.errors import RopeconvError
from ropeconv.numbers import show
from ropeconv.request import RequestError
from ropeconv.folder import confined

BUFFER_SUFFIXES = {
    "rotary_emb.inv_freq": "inv_freq",
    "rotary_pos_emb.inv_freq": "inv_freq",
    "rotary.inv_freq": "inv_freq",
    "cos_cached": "cos",
    "sin_cached": "sin",
}
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}  # what a rotary buffer may be stored as
# Every dtype the safetensors format defines, in bits per value.
ALL_DTYPE_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16, "I8": 8,
                  "U64": 64, "U32": 32, "U16": 16, "U8": 8, "BOOL": 8, "F8_E4M3": 8, "F8_E5M2": 8,
                  "F8_E8M0": 8, "E8M0": 8, "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4, "C64": 64}
# The most values ropeconv will compute for one rotary buffer (a cos cache of 1M positions × 256 dims);
# a header claiming more is refused rather than allocated.
MAX_BUFFER_VALUES = 2**28
INDEX_NAME = "model.safetensors.index.json"
MAX_HEADER = 100 * 1024 * 1024
COPY_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class Buffer:
    file: str  # relative to the model folder
    name: str
    kind: str  # "inv_freq", "cos" or "sin"
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"file": self.file, "name": self.name, "kind": self.kind, "dtype": self.dtype, "shape": list(self.shape)}


def buffer_kind(name: str) -> str | None:
    for suffix, kind in BUFFER_SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    return None


def read_header(path: Path) -> tuple[dict, int]:
    """(header, offset where tensor data starts) of a safetensors file, validated against its size:
    every tensor has a known dtype, a shape of whole numbers, integer offsets inside the file, and
    exactly the bytes its shape × dtype needs — so nothing computed from a header can claim more than
    the file holds."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise _corrupt(path, "shorter than its 8-byte header length")
            (length,) = struct.unpack("<Q", raw_len)
            if length > min(MAX_HEADER, size - 8):
                raise _corrupt(path, f"header length {length} exceeds the file")
            header = json.loads(f.read(length))
    except PermissionError:
        raise RopeconvError(f"cannot read {path}: permission denied", "fix the file's permissions") from None
    except OSError as exc:
        raise RopeconvError(f"cannot read {path}: {exc.strerror or exc}", "check the file") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _corrupt(path, "header is not valid JSON") from None
    except (RecursionError, ValueError):  # absurd nesting or integers
        raise _corrupt(path, "header nests too deep or holds absurd numbers") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object")
    data_start = 8 + length
    check_header(header, size - data_start, path)
    return header, data_start


def check_header(header: dict, data_size: int | None, path: Path | str) -> None:
    """Validate a parsed safetensors header (local, or read from the Hub with `data_size` None)."""
    for name, info in header.items():
        if name == "__metadata__":
            if info is not None and not isinstance(info, dict):
                raise _corrupt(path, "__metadata__ is not an object")
            continue
        if any(ord(c) < 32 for c in name):
            raise _corrupt(path, f"a tensor name holds control characters ({name[:40]!r})")
        why = _tensor_problem(info, data_size)
        if why:
            raise _corrupt(path, f"tensor {name[:80]} {why}")


def _tensor_problem(info: Any, data_size: int | None) -> str | None:
    if not isinstance(info, dict):
        return "is not an object"
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in ALL_DTYPE_BITS:
        return f"has no known dtype ({str(dtype)[:20]!r})"
    if not isinstance(shape, list) or not all(_whole(d) for d in shape):
        return "has a shape that is not a list of whole numbers"
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_whole(o) for o in offsets):
        return "has data_offsets that are not two whole numbers"
    begin, end = offsets
    if begin > end or (data_size is not None and end > data_size):
        return "has offsets outside the file"
    if (math.prod(shape) * ALL_DTYPE_BITS[dtype] + 7) // 8 != end - begin:
        return f"claims shape {shape} of {dtype} but holds {end - begin} bytes"
    return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def expected_size(path: Path) -> int:
    """The file size a safetensors shard's header requires (8 + header + the end of its last tensor)."""
    header, start = read_header(path)
    return start + max((info["data_offsets"][1] for key, info in header.items() if key != "__metadata__"),
                       default=0)


def _corrupt(path: Path | str, why: str) -> RopeconvError:
    return RopeconvError(f"{Path(path).name} is not a valid safetensors file: {why}",
                         "re-download or re-save that shard")


def weight_files(folder: Path) -> list[str]:
    """Safetensors shards of a model folder (relative names), validated against the index; every name
    is checked by the one confinement rule (source.confined)."""
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            data = json.loads(confined(folder, INDEX_NAME).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RopeconvError(f"{INDEX_NAME} is not valid JSON", "re-download the index file") from None
        except (RecursionError, ValueError):
            raise RopeconvError(f"{INDEX_NAME} nests too deep or holds absurd numbers",
                                "re-download the index file") from None
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict):
            raise RopeconvError(f"{INDEX_NAME} is not a valid index (no weight_map object)",
                                "re-download the index file")
        bad = next((v for v in weight_map.values() if not isinstance(v, str) or not v), None)
        if bad is not None or any(not isinstance(v, str) for v in weight_map.values()):
            raise RopeconvError(f"{INDEX_NAME} maps a tensor to {show(bad)}, not a shard file name",
                                "fix the index: every weight_map value is a file name in the folder")
        files = sorted(set(weight_map.values()))
        for name in files:
            target = confined(folder, name)
            if not target.is_file():
                raise RopeconvError(f"{INDEX_NAME} names {name}, which is missing", "re-download the missing shard")
        return files
    return sorted(p.name for p in folder.glob("*.safetensors"))


def find_buffers(folder: Path) -> list[Buffer]:
    return buffers_in_headers({name: read_header(folder / name)[0] for name in weight_files(folder)})


def buffers_in_headers(headers: dict[str, dict]) -> list[Buffer]:
    """Rotary buffers named in safetensors headers ({shard name: header}), e.g. read from the Hub."""
    found = []
    for name, header in headers.items():
        check_header(header, None, name)  # Hub headers come without the file
        for key, info in header.items():
            kind = buffer_kind(key) if key != "__metadata__" else None
            if kind:
                found.append(Buffer(name, key, kind, info["dtype"], tuple(info["shape"])))
    return found


def bin_files_with_buffers(folder: Path) -> list[str]:
    """PyTorch .bin shards whose pickle names a rotary buffer — found without unpickling."""
    hits = []
    for path in sorted(folder.glob("*.bin")):
        try:
            with zipfile.ZipFile(path) as archive:
                pickle_name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(pickle_name) if pickle_name else b""
        except (zipfile.BadZipFile, OSError):
            continue  # legacy non-zip pickles: only torch.load could tell; leave them untouched
        if any(suffix.encode() in data for suffix in BUFFER_SUFFIXES):
            hits.append(path.name)
    return hits


def buffer_values(buffer: Buffer, inv_freq: list[float], attention_factor: float) -> tuple[str, bytes]:
    """(dtype, raw little-endian bytes) of `buffer` recomputed from `inv_freq`.

    inv_freq is always stored as float32 (bf16 visibly loses positional precision). cos/sin caches
    keep their dtype and shape: positions along the second-to-last axis, and the last axis either
    the rotary dims (frequencies repeated, as in cat(freqs, freqs)) or half of them.
    """
    import numpy as np

    if buffer.dtype not in DTYPE_SIZES:
        raise RequestError("buffers", f"{buffer.name} is stored as {buffer.dtype}, not a float type, so it cannot hold "
                           "rotary values", "use {name} drop (or keep)")
    if math.prod(buffer.shape) > MAX_BUFFER_VALUES:
        raise RequestError("buffers", f"{buffer.name} claims shape {list(buffer.shape)}, more than {MAX_BUFFER_VALUES} "
                           "values", "use {name} drop (or keep)")
    if buffer.kind == "inv_freq":
        if math.prod(buffer.shape) != len(inv_freq):
            raise RequestError("buffers", f"{buffer.name} holds {math.prod(buffer.shape)} values but the config "
                               f"gives {len(inv_freq)} rotary frequencies", "use {name} drop or keep")
        return "F32", np.asarray(inv_freq, dtype="<f4").tobytes()
    if len(buffer.shape) < 2:
        raise RequestError("buffers", f"{buffer.name} has shape {list(buffer.shape)}, not a [positions, dims] cache",
                           "use {name} drop or keep")
    positions, width = buffer.shape[-2], buffer.shape[-1]
    freqs = np.asarray(inv_freq, dtype=np.float64)
    if width == 2 * len(freqs):
        freqs = np.concatenate([freqs, freqs])
    elif width != len(freqs):
        raise RequestError("buffers", f"{buffer.name} has width {width}, which fits neither {len(freqs)} nor "
                           f"{2 * len(freqs)} rotary dims", "use {name} drop or keep")
    angles = np.outer(np.arange(positions, dtype=np.float64), freqs)
    values = (np.cos(angles) if buffer.kind == "cos" else np.sin(angles)) * attention_factor
    values = values.reshape(buffer.shape)
    return buffer.dtype, _encode(values, buffer.dtype)


def _encode(values, dtype: str) -> bytes:
    import numpy as np

    if dtype == "BF16":  # round-to-nearest-even from float32
        bits = values.astype("<f4").view("<u4").astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return bits.astype("<u2").tobytes()
    return values.astype({"F64": "<f8", "F32": "<f4", "F16": "<f2"}[dtype]).tobytes()


def decode(raw: bytes, dtype: str) -> list[float]:
    """Raw little-endian tensor bytes as Python floats (used by tests and `check`)."""
    import numpy as np

    if dtype == "BF16":
        return (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4").astype(float).tolist()
    return np.frombuffer(raw, {"F64": "<f8", "F32": "<f4", "F16": "<f2"}[dtype]).astype(float).tolist()


def read_tensor_bytes(path: Path, name: str) -> tuple[str, list[int], bytes]:
    header, start = read_header(path)
    info = header[name]
    begin, end = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + begin)
        return info["dtype"], info["shape"], f.read(end - begin)


def rewrite_shard(src: Path, dst: Path, replace: dict[str, tuple[str, bytes]], drop: set[str]) -> None:
    """Write `src` to `dst` with some tensors replaced (new dtype + bytes, same shape) or dropped.

    Every other tensor's bytes are streamed through unchanged, in their original order.
    """
    header, start = read_header(src)
    metadata = header.pop("__metadata__", None)
    order = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    new_header: dict = {"__metadata__": metadata} if metadata is not None else {}
    offset, pieces = 0, []
    for name in order:
        if name in drop:
            continue
        info = dict(header[name])
        begin, end = info["data_offsets"]
        if name in replace:
            info["dtype"], data = replace[name]
            size = len(data)
        else:
            data, size = None, end - begin
        info["data_offsets"] = [offset, offset + size]
        new_header[name] = info
        pieces.append((data, start + begin, size))
        offset += size
    blob = json.dumps(new_header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned, as the safetensors writer does
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(struct.pack("<Q", len(blob)) + blob)
        for data, position, size in pieces:
            if data is not None:
                fout.write(data)
                continue
            fin.seek(position)
            while size:
                chunk = fin.read(min(COPY_CHUNK, size))
                fout.write(chunk)
                size -= len(chunk)
