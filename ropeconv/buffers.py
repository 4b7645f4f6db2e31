"""Stored rotary buffers: found from safetensors headers alone, rewritten by streaming a shard.

Checkpoints saved by transformers ≤ 4.31, GPT-NeoX/Pythia and some remote code carry
`*rotary_emb.inv_freq` (and sometimes `cos_cached`/`sin_cached`). Modern transformers ignores
them; TGI and persistent-buffer remote code read them. A shard is only ever read whole when one
of its tensors must change, and then it is streamed, never held in memory.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ropeconv.errors import RopeconvError

BUFFER_SUFFIXES = {
    "rotary_emb.inv_freq": "inv_freq",
    "rotary_pos_emb.inv_freq": "inv_freq",
    "rotary.inv_freq": "inv_freq",
    "cos_cached": "cos",
    "sin_cached": "sin",
}
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
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
    """(header, offset where tensor data starts) of a safetensors file, validated against its size."""
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
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _corrupt(path, "header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object")
    data_start, data_size = 8 + length, size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = info["data_offsets"]
            ok = 0 <= begin <= end <= data_size and isinstance(info["shape"], list)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise _corrupt(path, f"tensor {name} has bad offsets or shape")
    return header, data_start


def _corrupt(path: Path, why: str) -> RopeconvError:
    return RopeconvError(f"{path.name} is not a valid safetensors file: {why}",
                         "re-download or re-save that shard")


def weight_files(folder: Path) -> list[str]:
    """Safetensors shards of a model folder (relative names), validated against the index."""
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            raise RopeconvError(f"{INDEX_NAME} is not a valid index (no weight_map)",
                                "re-download the index file") from None
        root = folder.resolve()
        for name in files:
            target = (folder / name).resolve()
            if not isinstance(name, str) or os.path.isabs(name) or root not in target.parents:
                raise RopeconvError(f"{INDEX_NAME} names {name!r}, which is outside the model folder",
                                    "fix the index: shard names must be files inside the folder")
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

    if buffer.kind == "inv_freq":
        if math.prod(buffer.shape) != len(inv_freq):
            raise RopeconvError(f"{buffer.name} holds {math.prod(buffer.shape)} values but the config gives "
                                f"{len(inv_freq)} rotary frequencies", "use --buffers drop or keep")
        return "F32", np.asarray(inv_freq, dtype="<f4").tobytes()
    if len(buffer.shape) < 2:
        raise RopeconvError(f"{buffer.name} has shape {list(buffer.shape)}, not a [positions, dims] cache",
                            "use --buffers drop or keep")
    positions, width = buffer.shape[-2], buffer.shape[-1]
    freqs = np.asarray(inv_freq, dtype=np.float64)
    if width == 2 * len(freqs):
        freqs = np.concatenate([freqs, freqs])
    elif width != len(freqs):
        raise RopeconvError(f"{buffer.name} has width {width}, which fits neither {len(freqs)} nor "
                            f"{2 * len(freqs)} rotary dims", "use --buffers drop or keep")
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
