"""Reading GGUF files into a RoPE description, and what ropeconv knows about llama.cpp's architectures.

`open_gguf` validates a file and keeps light references to its keys and tensors (`GgufInfo`);
`spec_from_metadata` / `spec_from_gguf` turn the `{arch}.context_length` / `{arch}.rope.*` keys and the
`rope_freqs` / `rope_factors_*` tensors into a `GgufRopeSpec`; the `ropeconv.*` keys an earlier conversion
wrote are read by `ropeconv.record`. The llama.cpp rules they follow are listed in `ropeconv.gguf_io`'s docstring.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ropeconv.errors import RopeconvError
from ropeconv.families import family_of
from ropeconv.methods import Basis, base_inv_freq, compute, yarn_get_mscale
from ropeconv.numbers import MAX_FACTOR, MAX_HEAD_DIM, finite_number, positive_int, show
from ropeconv.spec import RopeSpec

ROPE_FREQS = "rope_freqs.weight"
FACTORS_LONG = "rope_factors_long.weight"
FACTORS_SHORT = "rope_factors_short.weight"
ROPE_TENSORS = (ROPE_FREQS, FACTORS_LONG, FACTORS_SHORT)

# Architectures whose llama.cpp loader creates `rope_freqs` for every layer (Llama 3 frequency factors).
ROPE_FREQS_ARCHS = frozenset({
    "llama", "llama4", "deci", "granite", "granitemoe", "minicpm", "mistral3", "refact", "apertus", "arcee",
    "exaone", "exaone4", "pangu-embedded",
})
# Architectures that create `rope_factors_long`/`_short`: always (phi3, phimoe) or, for the rest, only when
# rope.scaling.type is longrope (then they do not create rope_freqs).
LONGROPE_ARCHS = frozenset({
    "phi3", "phimoe", "llama", "deci", "granite", "granitemoe", "minicpm", "mistral3", "refact", "apertus",
    "pangu-embedded",
})
# Architectures that read rope.scaling.yarn_beta_fast / yarn_beta_slow, with their defaults there.
YARN_BETA_ARCHS = {"grok": (8.0, 1.0), "mistral3": (32.0, 1.0)}
# llama.cpp's deepseek2 graph (src/models/deepseek2.cpp, src/llama-context.cpp): with
# rope.scaling.yarn_log_multiplier (0.1·mscale_all_dim, as convert_hf_to_gguf.py writes it) the softmax is
# scaled by mscale(s, mscale_all_dim)², DeepSeek's attention, and the rotary magnitude is attn_factor itself
# (llama.cpp assumes mscale == mscale_all_dim)
YARN_LOG_MUL_ARCHS = ("deepseek2",)
YARN_BETA_DEFAULT = (32.0, 1.0)
NON_ROPE = {
    "bloom": "ALiBi (a linear distance penalty), not RoPE",
    "mpt": "ALiBi (a linear distance penalty), not RoPE",
    "jina-bert-v2": "ALiBi (a linear distance penalty), not RoPE",
    "jais": "ALiBi (a linear distance penalty), not RoPE",
    "gpt2": "learned absolute position embeddings, not RoPE",
    "starcoder": "learned absolute position embeddings, not RoPE",
    "bert": "learned absolute position embeddings, not RoPE",
    "t5": "relative position buckets, not RoPE",
    "t5encoder": "relative position buckets, not RoPE",
    "mamba": "a state-space model with no attention positions",
    "mamba2": "a state-space model with no attention positions",
    "rwkv6": "a recurrent model with no attention positions",
    "rwkv6qwen2": "a recurrent model with no attention positions",
    "rwkv7": "a recurrent model with no attention positions",
    "arwkv7": "a recurrent model with no attention positions",
    "wavtokenizer-dec": "an audio decoder without RoPE",
    "clip": "a vision encoder without RoPE",
}
HEADER_MIN = 24  # magic, version, tensor count, kv count
SMALL_ARRAY = 256  # arrays up to this length are read into the metadata view


# ---------------------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class FieldRef:
    """Where one metadata key/value lies in the file (copied byte for byte when unchanged)."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class TensorRef:
    """One tensor: its info record in the header and its data, by position in the file."""

    name: str
    info_offset: int
    info_size: int  # including the trailing 8-byte data offset
    type_name: str
    type_id: int
    shape: tuple[int, ...]  # as stored (ne0 first)
    n_bytes: int
    data_offset: int  # absolute


@dataclass
class GgufInfo:
    """An opened GGUF file, without its reader: keys and tensors by position, small values by key.

    The gguf reader builds Python objects for every vocabulary entry (~160 MB for a 49k vocabulary);
    it is dropped as soon as these light references are taken.
    """

    path: Path
    fields: list[FieldRef]
    tensors: list[TensorRef]
    arch: str
    kv: dict[str, Any]  # scalar / short-array values by key (long arrays are left out)
    types: dict[str, int]  # GGUFValueType of every key
    rope_tensors: dict[str, list[float]]
    version: int
    endian: str  # struct prefix: "<" or ">"
    alignment: int
    file_size: int

    @property
    def split_count(self) -> int:
        return int(self.kv.get("split.count") or 1)


def _damaged(path: Path, why: str) -> RopeconvError:
    return RopeconvError(f"{path} is not a readable GGUF file: {why}",
                         "the file is damaged or incomplete; download or convert it again")


def open_gguf(path: str | Path) -> GgufInfo:
    """Open and validate a GGUF file (clear errors for missing, truncated or foreign files)."""
    path = Path(path)
    if not path.is_file():
        raise RopeconvError(f"{path} does not exist", "pass a .gguf model file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEADER_MIN)
    except OSError as exc:
        raise RopeconvError(f"cannot read {path}: {exc.strerror or exc}",
                            "check the file and its permissions") from None
    if len(head) >= 4 and head[:4] != b"GGUF":
        raise RopeconvError(f"{path} is not a GGUF file (it starts with {head[:4]!r}, not b'GGUF')",
                            "pass a llama.cpp .gguf model file")
    if size < HEADER_MIN:
        raise _damaged(path, f"only {size} bytes, shorter than a GGUF header (truncated)")

    try:
        scan = scan_gguf(path, size)
    except RopeconvError:
        raise
    except (ValueError, struct.error, OverflowError, MemoryError) as exc:
        raise _damaged(path, _reason(exc)) from None
    except OSError as exc:
        raise RopeconvError(f"cannot read {path}: {exc.strerror or exc}",
                            "check the file and its permissions") from None
    fields, tensors, kv, types, rope_tensors, version, endian, alignment = scan
    end = max((t.data_offset + t.n_bytes for t in tensors), default=0)
    if end > size:
        raise _damaged(path, f"tensor data ends at byte {end} but the file has {size} bytes (truncated)")
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _damaged(path, "it has no general.architecture")
    return GgufInfo(path=path, fields=fields, tensors=tensors, arch=arch, kv=kv, types=types,
                    rope_tensors=rope_tensors, version=version, endian=endian, alignment=alignment, file_size=size)


# GGUF value types (gguf.GGUFValueType) and their struct codes; 8 is STRING, 9 is ARRAY.
_SCALAR_CODES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
MAX_DIMS = 8  # llama.cpp's GGML_MAX_DIMS is 4; anything past a few is damage


def scan_gguf(path: Path, size: int):
    """Read a GGUF file's metadata and tensor infos straight from the bytes, without materialising the
    vocabulary: arrays longer than SMALL_ARRAY are skipped by their declared sizes (string arrays by their
    length prefixes), every size checked against the file before it is used. Returns (fields, tensors,
    kv, types, rope_tensors, version, endian, alignment)."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return _Scanner(m, size).scan()


class _Scanner:
    def __init__(self, data, size: int):
        self.m, self.size, self.e = data, size, "<"

    def need(self, offset: int, n: int) -> None:
        if n < 0 or offset + n > self.size:
            raise ValueError(f"it ends before its header does (truncated): {n} bytes wanted at byte {offset}")

    def unpack(self, fmt: str, offset: int) -> tuple:
        self.need(offset, struct.calcsize(self.e + fmt))
        return struct.unpack_from(self.e + fmt, self.m, offset)

    def string(self, offset: int) -> tuple[bytes, int]:
        (n,) = self.unpack("Q", offset)
        self.need(offset + 8, n)
        return bytes(self.m[offset + 8: offset + 8 + n]), offset + 8 + n

    def value(self, vtype: int, offset: int, keep: bool) -> tuple[Any, int]:
        """(value or None when not kept, offset after it)."""
        if vtype in _SCALAR_CODES:
            (v,) = self.unpack(_SCALAR_CODES[vtype], offset)
            return v, offset + struct.calcsize(_SCALAR_CODES[vtype])
        if vtype == _STRING:
            raw, end = self.string(offset)
            return (raw.decode("utf-8") if keep else None), end
        if vtype == _ARRAY:
            sub, count = self.unpack("IQ", offset)
            offset += 12
            keep = keep and count <= SMALL_ARRAY
            if sub in _SCALAR_CODES:
                width = struct.calcsize(_SCALAR_CODES[sub])
                self.need(offset, count * width)
                values = list(struct.unpack_from(f"{self.e}{count}{_SCALAR_CODES[sub]}", self.m, offset)) if keep \
                    else None
                return values, offset + count * width
            if sub not in (_STRING, _ARRAY):
                raise ValueError(f"unknown array element type {sub}")
            if count > self.size:  # every element takes at least one byte
                raise ValueError(f"an array claims {count} elements, more than the file's bytes")
            values = [] if keep else None
            for _ in range(count):
                item, offset = self.value(sub, offset, keep)
                if keep:
                    values.append(item)
            return values, offset
        raise ValueError(f"unknown value type {vtype}")

    def scan(self):
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        m = self.m
        if bytes(m[:4]) != b"GGUF":
            raise ValueError("GGUF magic invalid")
        (version,) = self.unpack("I", 4)
        if version & 0xFFFF == 0:  # written for the other byte order
            self.e = ">"
            (version,) = self.unpack("I", 4)
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported (2 and 3 are)")
        n_tensors, n_kv = self.unpack("QQ", 8)
        if n_kv > self.size or n_tensors > self.size:
            raise ValueError(f"it claims {n_kv} keys and {n_tensors} tensors, more than its bytes can hold")
        offset = 24
        fields: list[FieldRef] = []
        kv: dict[str, Any] = {}
        types: dict[str, int] = {}
        for _ in range(n_kv):
            start = offset
            raw_key, offset = self.string(offset)
            key = raw_key.decode("utf-8")
            (vtype,) = self.unpack("I", offset)
            offset += 4
            try:
                value, offset = self.value(vtype, offset, keep=True)
            except UnicodeDecodeError:  # a string that is not UTF-8: not a RoPE key; walk past it
                value, offset = self.value(vtype, offset, keep=False)
            fields.append(FieldRef(key, start, offset - start))
            types[key] = vtype
            if value is not None:
                kv[key] = value
        _refuse_unread_rope_keys(fields, kv, types)
        infos = []
        for _ in range(n_tensors):
            start = offset
            raw_name, offset = self.string(offset)
            (n_dims,) = self.unpack("I", offset)
            if n_dims > MAX_DIMS:
                raise ValueError(f"tensor {raw_name[:40]!r} claims {n_dims} dimensions")
            dims = self.unpack(f"{n_dims}Q", offset + 4)
            offset += 4 + 8 * n_dims
            ttype, rel = self.unpack("IQ", offset)
            offset += 12
            infos.append((raw_name.decode("utf-8"), start, offset - start, tuple(int(d) for d in dims), ttype, rel))
        alignment = 32
        if "general.alignment" in kv:
            alignment = kv["general.alignment"]
            if types["general.alignment"] != _UINT32 or alignment <= 0 or alignment & (alignment - 1):
                raise ValueError("general.alignment is not a power of two")
        data_offset = offset + (-offset % alignment)
        tensors = []
        for name, start, info_size, dims, ttype, rel in infos:
            if ttype not in GGML_QUANT_SIZES:
                raise ValueError(f"tensor {name} has unknown type {ttype}")
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
            count = math.prod(dims)
            if count % block:
                raise ValueError(f"tensor {name} has {count} values, not a whole number of {block}-value blocks")
            tensors.append(TensorRef(name, start, info_size, GGMLQuantizationType(ttype).name, ttype, dims,
                                     count // block * type_size, data_offset + rel))
        rope_tensors = {t.name: self.floats(t) for t in tensors if t.name in ROPE_TENSORS}
        return fields, tensors, kv, types, rope_tensors, int(version), self.e, int(alignment)

    def floats(self, tensor: TensorRef) -> list[float]:
        import numpy as np

        kinds = {"F32": "f4", "F16": "f2", "F64": "f8"}
        if tensor.type_name not in kinds:
            raise ValueError(f"{tensor.name} is stored as {tensor.type_name}, not floats")
        self.need(tensor.data_offset, tensor.n_bytes)
        raw = self.m[tensor.data_offset: tensor.data_offset + tensor.n_bytes]
        return [float(v) for v in np.frombuffer(raw, dtype=self.e + kinds[tensor.type_name]).astype(np.float64)]


def rope_key(arch: str, key: str) -> bool:
    """Whether `key` is one of the keys ropeconv reads a GGUF's context and RoPE from."""
    return key == f"{arch}.context_length" or key.startswith(f"{arch}.rope.")


def _refuse_unread_rope_keys(fields: list[FieldRef], kv: dict, types: dict) -> None:
    """A RoPE key the scan could not keep (an array too long for the metadata view, text that is not
    UTF-8) would be silently missing: every reader would fall back to a default and disagree with the
    file. Name it instead."""
    arch = kv.get("general.architecture")
    if not isinstance(arch, str):
        return
    for fld in fields:
        if rope_key(arch, fld.name) and fld.name not in kv:
            what = "an array too long to be a RoPE value" if types[fld.name] == _ARRAY else "not readable text"
            raise ValueError(f"its key {fld.name!r} holds {what}")


def _read_metadata(reader: Any) -> tuple[dict[str, Any], dict[str, int], dict[str, list[float]]]:
    """(values of the scalar and short-array keys, value type of every key, frequency-factor tensors)."""
    import numpy as np
    from gguf import GGUFValueType

    kv: dict[str, Any] = {}
    types: dict[str, int] = {}
    for name, fld in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        types[name] = int(fld.types[0]) if fld.types else -1
        if not fld.types or (fld.types[0] == GGUFValueType.ARRAY and len(fld.data) > SMALL_ARRAY):
            continue
        try:
            value = fld.contents()
        except (UnicodeDecodeError, ValueError):  # e.g. a string that is not UTF-8: not a RoPE key
            continue
        kv[name] = value.item() if hasattr(value, "item") else value
    tensors = {t.name: [float(v) for v in np.asarray(t.data, dtype=np.float64).reshape(-1)]
               for t in reader.tensors if t.name in ROPE_TENSORS}
    return kv, types, tensors


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (IndexError, ValueError)) and ("reshape" in text or "index" in text or "out of bounds" in text):
        return f"it ends before its header or tensors do (truncated): {text}"
    return text


def _field_size(fld: Any) -> int:
    return sum(int(part.nbytes) for part in fld.parts)


# ---------------------------------------------------------------------------------------------------------
# the RoPE description


@dataclass
class GgufRopeSpec(RopeSpec):
    """A RopeSpec read from GGUF metadata. With a frequency-factor tensor, the tensor is the truth."""

    freq_factors: list[float] | None = None  # rope_freqs values (inv_j = b_j / ff_j)
    raw: dict = field(default_factory=dict)  # the rope keys as stored

    def inv_freq(self, seq_len: int | None = None) -> tuple[list[float], float]:
        if self.freq_factors is not None:
            base = base_inv_freq(self.theta, self.rotary_dim)
            return [b / f for b, f in zip(base, self.freq_factors)], 1.0
        return super().inv_freq(seq_len)


def _key(arch: str, name: str) -> str:
    return f"{arch}.{name}"


def _scalar(value: Any) -> Any:
    if isinstance(value, list):
        nonzero = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool) and v]
        return max(nonzero) if nonzero else None
    return value


_CONVERT_AGAIN = "the file is damaged or was written wrongly; convert the model again"


def _meta_int(key: str, value: Any) -> int:
    """A count from GGUF metadata (uint32 in llama.cpp): a whole number from 1 to 2**32-1."""
    if isinstance(value, str):
        raise RopeconvError(f"{key} is the text {show(value)}, not a number", _CONVERT_AGAIN)
    return positive_int(value, key, _CONVERT_AGAIN)


def _meta_float(key: str, value: Any) -> float:
    if isinstance(value, str):
        raise RopeconvError(f"{key} is the text {show(value)}, not a number", _CONVERT_AGAIN)
    return finite_number(value, key, _CONVERT_AGAIN)


def spec_from_gguf(reader: Any, original_context: int | None = None) -> GgufRopeSpec:
    """The RoPE description of an opened `gguf.GGUFReader` (same fields as `read_spec` gives for configs)."""
    kv, _, tensors = _read_metadata(reader)
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise RopeconvError("the GGUF file has no general.architecture", "the file is damaged; convert it again")
    return spec_from_metadata(arch, kv, tensors, original_context=original_context)


def check_rope_arch(arch: str, kv: dict) -> list[str]:
    """Refuse architectures without RoPE; warn about ones this module does not know."""
    if arch in NON_ROPE:
        raise RopeconvError(f"unsupported architecture '{arch}': it uses {NON_ROPE[arch]}",
                            "no RoPE context extension applies to it")
    from gguf import MODEL_ARCH_NAMES

    has_rope_keys = any(k.startswith(f"{arch}.rope.") for k in kv)
    if arch not in MODEL_ARCH_NAMES.values():
        if not has_rope_keys:
            raise RopeconvError(f"unsupported architecture '{arch}': unknown to the gguf package and its file has "
                                f"no {arch}.rope.* keys",
                                "ropeconv handles GGUF files of RoPE models that llama.cpp knows")
        return [f"architecture '{arch}' is unknown to the installed gguf package; read from its {arch}.rope.* keys"]
    return []


def spec_from_metadata(arch: str, kv: dict, tensors: dict[str, list[float]],
                       original_context: int | None = None) -> GgufRopeSpec:
    """Build the RoPE description from metadata values and the frequency-factor tensors, in phases:
    the context and head geometry → L0 → what the file stores about scaling → the method it amounts to."""
    warnings = check_rope_arch(arch, kv)
    k = lambda name: _key(arch, name)  # noqa: E731
    raw = {key: value for key, value in kv.items()
           if key.startswith(f"{arch}.rope.") or key == k("context_length")}
    ctx, theta, head_dim, rotary_dim = _geometry(kv, k)
    L0, source = _trained_context(kv, k, ctx, original_context)
    stored = _stored_scaling(kv, k, tensors, rotary_dim)
    found = _scaling(arch, kv, k, stored, ctx, L0, source, theta, rotary_dim, warnings)
    warnings += _split_warnings(kv)
    extra = {}
    if kv.get(k("rope.dimension_sections")) is not None:
        extra["mrope_section"] = kv[k("rope.dimension_sections")]
    return GgufRopeSpec(model_type=arch, family=family_of(arch), path=(), theta=theta, head_dim=head_dim,
                        partial_rotary_factor=rotary_dim / head_dim, rotary_dim=rotary_dim,
                        max_position_embeddings=int(ctx), original_context=found.L0,
                        original_context_source=found.source, rope_type=found.rope_type, scaling=found.scaling,
                        shape="gguf", extra=extra, warnings=warnings, freq_factors=found.freq_factors, raw=raw)


def _geometry(kv: dict, k) -> tuple[int, float, int, int]:
    """(context_length, θ, head size, rotary dimensions), each checked."""
    ctx = kv.get(k("context_length"))
    if not isinstance(ctx, int) or isinstance(ctx, bool) or ctx <= 0:
        raise RopeconvError(f"the GGUF file has no valid {k('context_length')} ({show(ctx)})",
                            "llama.cpp needs it too: convert the model again")
    ctx = _meta_int(k("context_length"), ctx)
    stored_theta = kv.get(k("rope.freq_base"))
    theta = _meta_float(k("rope.freq_base"), stored_theta) if stored_theta is not None else 10000.0
    if theta <= 1:
        raise RopeconvError(f"{k('rope.freq_base')} is {theta:g}, which must be greater than 1",
                            "convert the model again")
    heads = kv.get(k("attention.head_count"))
    heads = _meta_int(k("attention.head_count"), _scalar(heads)) if heads not in (None, [], 0) else None
    embd = kv.get(k("embedding_length"))
    embd = _meta_int(k("embedding_length"), embd) if embd else None
    key_length = kv.get(k("attention.key_length"))
    head_dim = _meta_int(k("attention.key_length"), key_length) if key_length else (
        embd // heads if embd and heads else None)
    dims = kv.get(k("rope.dimension_count"))
    rotary_dim = _meta_int(k("rope.dimension_count"), dims) if dims else head_dim
    if not head_dim or not rotary_dim:
        raise RopeconvError(f"the GGUF file gives neither {k('rope.dimension_count')} nor the head size",
                            "convert the model again")
    head_dim, rotary_dim = int(head_dim), int(rotary_dim)
    if max(head_dim, rotary_dim) > MAX_HEAD_DIM:
        raise RopeconvError(f"the GGUF file gives a head size of {max(head_dim, rotary_dim)}, more than {MAX_HEAD_DIM}",
                            _CONVERT_AGAIN)
    if rotary_dim < 4 or rotary_dim % 2:  # NTK's θ·s^(d/(d-2)) needs d > 2; no real model rotates fewer
        raise RopeconvError(f"rotary dimension {rotary_dim} is odd or too small", "convert the model again")
    return ctx, theta, head_dim, rotary_dim


def _trained_context(kv: dict, k, ctx: int, original_context: int | None) -> tuple[int, str]:
    """L0 and where it came from: the option, the file's original_context_length, else its context_length."""
    stored_orig = kv.get(k("rope.scaling.original_context_length"))
    if original_context is not None:
        return positive_int(original_context, "--original-context",
                            "pass the context the model was trained at, e.g. --original-context 8192"), \
            "--original-context"
    if stored_orig:
        return _meta_int(k("rope.scaling.original_context_length"), stored_orig), "rope.scaling.original_context_length"
    return int(ctx), "context_length"


@dataclass(frozen=True)
class _StoredScaling:
    """What a GGUF stores about scaling, checked: its type key, the factor llama.cpp applies, the attention
    factor, and the frequency-factor tensors."""

    scaling_type: str | None
    factor: float | None  # the effective factor (None: llama.cpp applies none)
    attn: float
    freqs: list[float] | None
    long_f: list[float] | None
    short_f: list[float] | None


def _stored_scaling(kv: dict, k, tensors: dict[str, list[float]], rotary_dim: int) -> _StoredScaling:
    scaling_type = kv.get(k("rope.scaling.type"))
    factor = kv.get(k("rope.scaling.factor")) or kv.get(k("rope.scale_linear")) or None
    if factor is not None:
        factor = _meta_float(k("rope.scaling.factor"), factor)
        if not 0 < factor <= MAX_FACTOR:
            raise RopeconvError(f"{k('rope.scaling.factor')} is {factor:g}, outside (0, {MAX_FACTOR:g}]",
                                _CONVERT_AGAIN)
    attn = _meta_float(k("rope.scaling.attn_factor"), kv.get(k("rope.scaling.attn_factor"), 1.0) or 1.0)
    freqs, long_f, short_f = tensors.get(ROPE_FREQS), tensors.get(FACTORS_LONG), tensors.get(FACTORS_SHORT)
    half = rotary_dim // 2
    for name, values in ((ROPE_FREQS, freqs), (FACTORS_LONG, long_f), (FACTORS_SHORT, short_f)):
        if values is not None and len(values) != half:
            raise RopeconvError(f"{name} has {len(values)} values but the model has {half} rotary pairs",
                                "the file is inconsistent; convert it again")
    if scaling_type not in (None, "none", "linear", "yarn", "longrope"):
        raise RopeconvError(f"{k('rope.scaling.type')} is {scaling_type!r}, which llama.cpp does not know",
                            "llama.cpp knows none, linear, yarn and longrope; convert the model again")
    # llama.cpp: type "none" forces scale 1; otherwise the factor key (or the old scale_linear) applies.
    effective = None if scaling_type == "none" or not factor or float(factor) == 1.0 else float(factor)
    return _StoredScaling(scaling_type, effective, attn, freqs, long_f, short_f)


@dataclass(frozen=True)
class _Scaling:
    """The method a GGUF's stored scaling amounts to, as a RoPE description states it."""

    rope_type: str
    scaling: dict
    L0: int
    source: str
    freq_factors: list[float] | None = None


def _scaling(arch: str, kv: dict, k, stored: _StoredScaling, ctx: int, L0: int, source: str, theta: float,
             rotary_dim: int, warnings: list[str]) -> _Scaling:
    """Which method the stored keys and tensors amount to, in llama.cpp's order of precedence."""
    freqs, factor = stored.freqs, stored.factor
    if stored.scaling_type == "longrope" or (stored.long_f and stored.short_f and stored.scaling_type != "yarn"):
        return _longrope(k, stored, ctx, L0, source, warnings)
    if freqs is not None and not factor and stored.scaling_type != "yarn":
        if all(abs(f - 1) < 1e-6 for f in freqs):
            return _Scaling("default", {}, L0, source)  # an all-ones rope_freqs tensor changes nothing
        return _llama3(freqs, theta, rotary_dim, L0, source, warnings)
    if stored.scaling_type == "yarn":
        return _Scaling("yarn", _yarn(arch, kv, k, stored, L0, warnings), L0, source)
    if factor:
        if freqs is not None:
            warnings.append("the file has a rope_freqs tensor and a linear factor: llama.cpp applies both "
                            "(shown here without the tensor)")
        return _Scaling("linear", {"factor": factor}, L0, source)
    return _Scaling("default", {}, L0, source)


def _longrope(k, stored: _StoredScaling, ctx: int, L0: int, source: str, warnings: list[str]) -> _Scaling:
    if not (stored.long_f and stored.short_f):
        raise RopeconvError(f"{k('rope.scaling.type')} is longrope but the file lacks the "
                            "rope_factors_long / rope_factors_short tensors", "convert the model again")
    if stored.factor:
        warnings.append(f"{k('rope.scaling.factor')} = {stored.factor:g} is set on a LongRoPE file: llama.cpp "
                        "divides the frequencies by it on top of the factor tensors")
    return _Scaling("longrope", {"factor": ctx / L0, "original_max_position_embeddings": L0,
                                 "short_factor": stored.short_f, "long_factor": stored.long_f,
                                 "attention_factor": stored.attn}, L0, source)


def _llama3(freqs: list[float], theta: float, rotary_dim: int, L0: int, source: str,
            warnings: list[str]) -> _Scaling:
    fitted = fit_llama3(theta, rotary_dim, freqs, L0 if source != "context_length" else None)
    if fitted is None:
        warnings.append("the rope_freqs tensor is not Llama 3 scaling with any L0/low/high factors ropeconv "
                        "could fit: shown as custom frequency factors")
        return _Scaling("llama3", {"factor": max(freqs), "freq_factors": "rope_freqs tensor"}, L0, source, freqs)
    fit_L0, lf, hf, s = fitted
    if fit_L0 != L0:
        L0, source = fit_L0, "fitted to the rope_freqs tensor"
    return _Scaling("llama3", {"factor": s, "low_freq_factor": lf, "high_freq_factor": hf,
                               "original_max_position_embeddings": L0}, L0, source, freqs)


def _yarn(arch: str, kv: dict, k, stored: _StoredScaling, L0: int, warnings: list[str]) -> dict:
    """YaRN's parameters as llama.cpp runs this architecture: the betas where it reads them, else its
    defaults; DeepSeek's log multiplier; the attention factor relative to 0.1·ln s + 1."""
    s = float(stored.factor or 1.0)
    scaling: dict = {"factor": s, "original_max_position_embeddings": L0}
    defaults = YARN_BETA_ARCHS.get(arch, YARN_BETA_DEFAULT)
    for i, name in enumerate(("beta_fast", "beta_slow")):
        value = kv.get(k(f"rope.scaling.yarn_{name}"))
        if value is not None:
            value = _meta_float(k(f"rope.scaling.yarn_{name}"), value)
        if value is not None and arch not in YARN_BETA_ARCHS:
            warnings.append(f"{k(f'rope.scaling.yarn_{name}')} = {value:g} is ignored by llama.cpp for '{arch}' "
                            f"(it uses {defaults[i]:g})")
        used = float(value) if value is not None and arch in YARN_BETA_ARCHS else defaults[i]
        if used != YARN_BETA_DEFAULT[i]:
            scaling[name] = used
    log_mul = kv.get(k("rope.scaling.yarn_log_multiplier"))
    log_mul = _meta_float(k("rope.scaling.yarn_log_multiplier"), log_mul) if log_mul is not None else None
    if arch in YARN_LOG_MUL_ARCHS and log_mul:
        scaling["mscale"] = scaling["mscale_all_dim"] = float(log_mul) / 0.1
        if abs(stored.attn - 1.0) > 1e-7:
            scaling["attention_factor"] = stored.attn
    elif abs(stored.attn - 1.0) > 1e-7:
        scaling["attention_factor"] = yarn_get_mscale(s) * stored.attn
    if stored.freqs is not None:
        warnings.append("the file has both YaRN keys and a rope_freqs tensor: llama.cpp applies both "
                        "(shown here without the tensor)")
    if log_mul is not None:
        warnings.append(f"{k('rope.scaling.yarn_log_multiplier')} is set: llama.cpp derives this "
                        f"architecture's YaRN attention factor from it")
    return scaling


def _split_warnings(kv: dict) -> list[str]:
    split_count = kv.get("split.count")
    if split_count is not None and _meta_int("split.count", split_count) > 1:
        part = _meta_int("split.no", kv.get("split.no", 0)) if kv.get("split.no") else 0
        return [f"this is part {part + 1} of a {split_count}-part split GGUF"]
    return []


def fit_llama3(theta: float, dim: int, ff: list[float], L0: int | None) -> tuple[int, float, float, float] | None:
    """(L0, low_freq_factor, high_freq_factor, factor) that reproduce a rope_freqs tensor, or None.

    In the blend band 1/ff_j = (1-t)/s + t with t = (L0/λ_j - lf)/(hf - lf), linear in 1/λ_j; a line
    through the band gives L0/(hf-lf) and lf/(hf-lf). With L0 unknown, lf = 1 (Llama 3.1) is assumed.
    Every candidate is checked against the whole tensor.
    """
    s = max(ff)
    if s <= 1 + 1e-6:
        return None
    s = float(f"{s:.6g}")
    wavelengths = [2 * math.pi / b for b in base_inv_freq(theta, dim)]
    band = [(1 / lam, (1 / f - 1 / s) / (1 - 1 / s)) for lam, f in zip(wavelengths, ff)
            if 1 + 1e-5 < f < s * (1 - 1e-5)]
    candidates: list[tuple[int, float, float]] = []
    if len(band) >= 2:
        n = len(band)
        mx = sum(x for x, _ in band) / n
        my = sum(y for _, y in band) / n
        sxx = sum((x - mx) ** 2 for x, _ in band)
        if sxx > 0:
            a = sum((x - mx) * (y - my) for x, y in band) / sxx
            c = my - a * mx
            if a > 0 and c < 0:
                if L0:
                    width = L0 / a
                    lf = -c * width
                    candidates.append((L0, lf, lf + width))
                else:
                    width = -1 / c
                    candidates.append((int(round(a * width)), 1.0, 1.0 + width))
    if L0:
        candidates.append((L0, 1.0, 4.0))
    for cand_L0, lf, hf in candidates:
        lf, hf = float(f"{lf:.6g}"), float(f"{hf:.6g}")
        if cand_L0 <= 0 or hf <= lf or lf <= 0:
            continue
        inv, _ = compute("llama3", Basis(theta, dim, cand_L0),
                         {"factor": s, "low_freq_factor": lf, "high_freq_factor": hf})
        if all(abs(b / i - f) <= 1e-4 * f for b, i, f in zip(base_inv_freq(theta, dim), inv, ff)):
            return cand_L0, lf, hf, s
    return None


