"""Reading GGUF files into a RoPE description, and what ropeconv knows about llama.cpp's architectures.

`open_gguf` validates a file and keeps light references to its keys and tensors (`GgufInfo`);
`spec_from_metadata` / `spec_from_gguf` turn the `{arch}.context_length` / `{arch}.rope.*` keys and the
`rope_freqs` / `rope_factors_*` tensors into a `GgufRopeSpec`; `read_record` gives the `ropeconv.*` keys an
earlier conversion wrote. The llama.cpp rules they follow are listed in `ropeconv.gguf_io`'s docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ropeconv.errors import RopeconvError
from ropeconv.families import family_of
from ropeconv.methods import Basis, base_inv_freq, compute, yarn_get_mscale
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
RECORD_PREFIX = "ropeconv."
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

    from gguf import GGUFReader

    try:
        reader = GGUFReader(path, "r")
    except Exception as exc:  # the reader signals damage with ValueError, IndexError, KeyError, …
        raise _damaged(path, _reason(exc)) from None
    try:
        end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=reader.data_offset)
        if end > size:
            raise _damaged(path, f"tensor data ends at byte {end} but the file has {size} bytes (truncated)")
        kv, types, rope_tensors = _read_metadata(reader)
        fields = [FieldRef(name, int(fld.offset), _field_size(fld)) for name, fld in reader.fields.items()
                  if not name.startswith("GGUF.")]
        tensors = [TensorRef(t.name, int(t.field.offset), _field_size(t.field), t.tensor_type.name,
                             int(t.tensor_type), tuple(int(x) for x in t.shape), int(t.n_bytes), int(t.data_offset))
                   for t in reader.tensors]
        version = int(reader.fields["GGUF.version"].parts[0][0])
        endian = "<" if reader.endianess.name == "LITTLE" else ">"
        alignment = int(reader.alignment)
    except RopeconvError:
        raise
    except Exception as exc:
        raise _damaged(path, _reason(exc)) from None
    finally:
        del reader
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _damaged(path, "it has no general.architecture")
    return GgufInfo(path=path, fields=fields, tensors=tensors, arch=arch, kv=kv, types=types,
                    rope_tensors=rope_tensors, version=version, endian=endian, alignment=alignment, file_size=size)


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
        nonzero = [v for v in value if v]
        return max(nonzero) if nonzero else None
    return value


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
    """Build the RoPE description from metadata values and the frequency-factor tensors."""
    warnings = check_rope_arch(arch, kv)
    k = lambda name: _key(arch, name)  # noqa: E731
    raw = {key: value for key, value in kv.items()
           if key.startswith(f"{arch}.rope.") or key == k("context_length")}

    ctx = kv.get(k("context_length"))
    if not isinstance(ctx, int) or isinstance(ctx, bool) or ctx <= 0:
        raise RopeconvError(f"the GGUF file has no valid {k('context_length')} ({ctx!r})",
                            "llama.cpp needs it too: convert the model again")
    theta = float(kv.get(k("rope.freq_base")) or 10000.0)
    if theta <= 1:
        raise RopeconvError(f"{k('rope.freq_base')} is {theta:g}, which must be greater than 1",
                            "convert the model again")
    heads = _scalar(kv.get(k("attention.head_count")))
    embd = kv.get(k("embedding_length"))
    head_dim = kv.get(k("attention.key_length")) or (embd // heads if embd and heads else None)
    rotary_dim = kv.get(k("rope.dimension_count")) or head_dim
    if not head_dim or not rotary_dim:
        raise RopeconvError(f"the GGUF file gives neither {k('rope.dimension_count')} nor the head size",
                            "convert the model again")
    head_dim, rotary_dim = int(head_dim), int(rotary_dim)
    if rotary_dim < 2 or rotary_dim % 2:
        raise RopeconvError(f"rotary dimension {rotary_dim} is odd or too small", "convert the model again")

    stored_orig = kv.get(k("rope.scaling.original_context_length"))
    if original_context is not None:
        L0, source = int(original_context), "--original-context"
    elif stored_orig:
        L0, source = int(stored_orig), "rope.scaling.original_context_length"
    else:
        L0, source = int(ctx), "context_length"

    scaling_type = kv.get(k("rope.scaling.type"))
    factor = kv.get(k("rope.scaling.factor")) or kv.get(k("rope.scale_linear")) or None
    attn = float(kv.get(k("rope.scaling.attn_factor"), 1.0) or 1.0)
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
    eff_factor = None if scaling_type == "none" or not factor or float(factor) == 1.0 else float(factor)
    freq_factors = None
    scaling: dict = {}
    if scaling_type == "longrope" or (long_f and short_f and scaling_type != "yarn"):
        rope_type = "longrope"
        if not (long_f and short_f):
            raise RopeconvError(f"{k('rope.scaling.type')} is longrope but the file lacks the "
                                "rope_factors_long / rope_factors_short tensors", "convert the model again")
        scaling = {"factor": ctx / L0, "original_max_position_embeddings": L0, "short_factor": short_f,
                   "long_factor": long_f, "attention_factor": attn}
        if eff_factor:
            warnings.append(f"{k('rope.scaling.factor')} = {eff_factor:g} is set on a LongRoPE file: llama.cpp "
                            "divides the frequencies by it on top of the factor tensors")
    elif freqs is not None and not eff_factor and scaling_type != "yarn" and all(abs(f - 1) < 1e-6 for f in freqs):
        rope_type = "default"  # an all-ones rope_freqs tensor changes nothing
    elif freqs is not None and not eff_factor and scaling_type != "yarn":
        rope_type = "llama3"
        freq_factors = freqs
        fitted = fit_llama3(theta, rotary_dim, freqs, L0 if source != "context_length" else None)
        if fitted is not None:
            fit_L0, lf, hf, s = fitted
            if fit_L0 != L0:
                L0, source = fit_L0, "fitted to the rope_freqs tensor"
            scaling = {"factor": s, "low_freq_factor": lf, "high_freq_factor": hf,
                       "original_max_position_embeddings": L0}
        else:
            scaling = {"factor": max(freqs), "freq_factors": "rope_freqs tensor"}
            warnings.append("the rope_freqs tensor is not Llama 3 scaling with any L0/low/high factors ropeconv "
                            "could fit: shown as custom frequency factors")
    elif scaling_type == "yarn":
        rope_type = "yarn"
        s = float(factor or 1.0)
        scaling = {"factor": s, "original_max_position_embeddings": L0}
        # The betas llama.cpp uses: the keys where this architecture reads them, else its defaults.
        defaults = YARN_BETA_ARCHS.get(arch, YARN_BETA_DEFAULT)
        for i, name in enumerate(("beta_fast", "beta_slow")):
            stored = kv.get(k(f"rope.scaling.yarn_{name}"))
            if stored is not None and arch not in YARN_BETA_ARCHS:
                warnings.append(f"{k(f'rope.scaling.yarn_{name}')} = {stored:g} is ignored by llama.cpp for '{arch}' "
                                f"(it uses {defaults[i]:g})")
            value = float(stored) if stored is not None and arch in YARN_BETA_ARCHS else defaults[i]
            if value != YARN_BETA_DEFAULT[i]:
                scaling[name] = value
        if abs(attn - 1.0) > 1e-7:
            scaling["attention_factor"] = yarn_get_mscale(s) * attn
        if freqs is not None:
            warnings.append("the file has both YaRN keys and a rope_freqs tensor: llama.cpp applies both "
                            "(shown here without the tensor)")
        if kv.get(k("rope.scaling.yarn_log_multiplier")) is not None:
            warnings.append(f"{k('rope.scaling.yarn_log_multiplier')} is set: llama.cpp derives this "
                            f"architecture's YaRN attention factor from it")
    elif eff_factor:
        rope_type = "linear"
        scaling = {"factor": eff_factor}
        if freqs is not None:
            warnings.append("the file has a rope_freqs tensor and a linear factor: llama.cpp applies both "
                            "(shown here without the tensor)")
    else:
        rope_type = "default"
    if kv.get("split.count", 1) and int(kv.get("split.count", 1)) > 1:
        warnings.append(f"this is part {int(kv.get('split.no', 0)) + 1} of a {int(kv['split.count'])}-part split GGUF")
    extra = {}
    if kv.get(k("rope.dimension_sections")) is not None:
        extra["mrope_section"] = kv[k("rope.dimension_sections")]

    return GgufRopeSpec(model_type=arch, family=family_of(arch), path=(), theta=theta, head_dim=head_dim,
                        partial_rotary_factor=rotary_dim / head_dim, rotary_dim=rotary_dim,
                        max_position_embeddings=int(ctx), original_context=L0, original_context_source=source,
                        rope_type=rope_type, scaling=scaling, shape="gguf", extra=extra, warnings=warnings,
                        freq_factors=freq_factors, raw=raw)


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


def read_record(kv: dict) -> dict | None:
    """The ropeconv.* keys an earlier conversion wrote (the unscaled base), if any."""
    rec = {key[len(RECORD_PREFIX):]: v for key, v in kv.items() if key.startswith(RECORD_PREFIX)}
    return rec or None
