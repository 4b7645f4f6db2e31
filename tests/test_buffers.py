"""ropeconv.buffers: one bound on what a safetensors header may claim (shape × dtype = its bytes, inside
the file), dtypes and offsets checked, index names confined to the model folder."""

from __future__ import annotations

import json
import struct

import pytest

from model_files import safetensors_bytes, write_model
from ropeconv.buffers import Buffer, buffer_values, expected_size, find_buffers, read_header, weight_files
from ropeconv.errors import RopeconvError


def raw_file(path, header: dict, data: bytes = b""):
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def test_a_valid_file_reads_and_its_expected_size_is_its_size(tmp_path):
    path = tmp_path / "a.safetensors"
    path.write_bytes(safetensors_bytes({"x": ("F32", [2, 3], bytes(24)), "y": ("BF16", [4], bytes(8))}))
    header, start = read_header(path)
    assert set(header) == {"__metadata__", "x", "y"} and expected_size(path) == path.stat().st_size


@pytest.mark.parametrize("entry", [
    {"dtype": "F32", "shape": [4_000_000, 16], "data_offsets": [0, 16]},
    {"dtype": "F32", "shape": [4], "data_offsets": [0, 17]},
    {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]},
    {"dtype": "F32", "shape": [4], "data_offsets": [0, 1600]},
    {"dtype": "F32", "shape": [4], "data_offsets": [0.0, 16.0]},
    {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]},
    {"shape": [4], "data_offsets": [0, 16]},
    {"dtype": "F32", "shape": [4]},
])
def test_claims_beyond_the_data_are_refused(tmp_path, entry):
    with pytest.raises(RopeconvError, match="not a valid safetensors file"):
        read_header(raw_file(tmp_path / "a.safetensors", {"t": entry}, bytes(16)))


def test_truncated_file_is_seen_by_expected_size(tmp_path):
    path = tmp_path / "a.safetensors"
    path.write_bytes(safetensors_bytes({"x": ("F32", [64], bytes(256))}))
    full = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(full - 100)
    with pytest.raises(RopeconvError):
        expected_size(path)


def test_index_names_are_confined_and_must_be_strings(tmp_path):
    root = write_model(tmp_path / "m", shards=2)
    assert len(weight_files(root)) == 2
    for weight_map in ({"a": 3}, {"a": "../x.safetensors"}, {"a": "a\x00b"}, [1]):
        (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        with pytest.raises(RopeconvError):
            weight_files(root)


def test_rotary_buffers_must_be_float_and_bounded():
    with pytest.raises(RopeconvError, match="not a float type"):
        buffer_values(Buffer("a", "rotary_emb.cos_cached", "cos", "I8", (4, 8)), [1.0] * 4, 1.0)
    with pytest.raises(RopeconvError, match="more than"):
        buffer_values(Buffer("a", "rotary_emb.cos_cached", "cos", "F32", (2**30, 8)), [1.0] * 4, 1.0)
    dtype, raw = buffer_values(Buffer("a", "rotary_emb.cos_cached", "cos", "F32", (3, 8)), [1.0] * 4, 1.0)
    assert dtype == "F32" and len(raw) == 3 * 8 * 4


def test_find_buffers_reads_headers_only(tmp_path):
    root = write_model(tmp_path / "m", extra_tensors={"model.rotary_emb.inv_freq": ("F32", [8], bytes(32))})
    assert [b.name for b in find_buffers(root)] == ["model.rotary_emb.inv_freq"]
