"""Small model folders written byte by byte (no torch): a llama-shaped config.json and safetensors shards
whose headers and data sizes are exactly what the format requires. Used by the safety, property and
fault tests, which need many folders fast and sometimes a large one (the fault tests)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
    "num_key_value_heads": 2, "num_hidden_layers": 1, "intermediate_size": 128, "vocab_size": 128,
    "max_position_embeddings": 4096, "rope_theta": 10000.0, "rope_scaling": None, "torch_dtype": "float32",
}


def safetensors_bytes(tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict | None = None) -> bytes:
    """A safetensors file: {name: (dtype, shape, raw bytes)} in order."""
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset, blobs = 0, []
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    return struct.pack("<Q", len(blob)) + blob + b"".join(blobs)


def write_model(folder: Path, config: dict | None = None, *, weights_bytes: int = 4096, shards: int = 1,
                extra_tensors: dict | None = None) -> Path:
    """A model folder: config.json, tokenizer_config.json and `shards` safetensors shards (with an index
    when more than one) holding `weights_bytes` of F32 data each (deterministic, not zeros)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config if config is not None else CONFIG, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 4096}))
    n = max(1, weights_bytes // 4)
    weight_map = {}
    chunk = bytes(range(256)) * 4096  # 1 MiB of a repeating pattern, written in pieces (no 1 GB in memory)
    for i in range(shards):
        name = "model.safetensors" if shards == 1 else f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        placeholder = ("F32", [n], b"")
        tensors = {**(extra_tensors if i == 0 and extra_tensors else {}), f"model.layers.{i}.weight": placeholder}
        head = safetensors_bytes(tensors)
        # the big tensor comes last: patch its end offset to the real size, then stream its bytes
        length = struct.unpack("<Q", head[:8])[0]
        header = json.loads(head[8: 8 + length])
        begin = header[f"model.layers.{i}.weight"]["data_offsets"][0]
        header[f"model.layers.{i}.weight"]["data_offsets"] = [begin, begin + n * 4]
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        with open(folder / name, "wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob + head[8 + length:])
            left = n * 4
            while left:
                piece = chunk[: min(left, len(chunk))]
                f.write(piece)
                left -= len(piece)
        weight_map.update({t: name for t in tensors})
    if shards > 1:
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links as 'link:target'), to assert a source is byte-identical afterwards."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[rel] = b"link:" + str(path.readlink()).encode()
        elif path.is_file():
            out[rel] = path.read_bytes()
    return out


def debris(parent: Path) -> list[str]:
    """Temporary or leftover names ropeconv may create beside an output."""
    return sorted(p.name for p in parent.iterdir() if ".ropeconv-tmp" in p.name or ".ropeconv-old" in p.name)


def write_gguf_file(path: Path, arch: str = "llama", kv: dict | None = None) -> Path:
    """A one-block GGUF written with the gguf package's own writer: `kv` maps each key to
    (GGUFValueType, value[, sub_type]), written in order; the file holds one small embedding tensor."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(1)
    for key, (vtype, value, *sub) in (kv or {}).items():
        writer.add_key_value(key, value, vtype, sub_type=sub[0] if sub else None)
    writer.add_tensor("token_embd.weight", np.arange(3 * 64, dtype=np.float32).reshape(3, 64))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
