"""llama.cpp's own converter (convert_hf_to_gguf.py from the llama-cpp-python source distribution)
run on ropeconv's extended folders, and the rope metadata of GGUF files read with the gguf package.

The source is SmolLM2-135M-Instruct (real weights, tokenizer and config, trained at 8192) cut to its
first two layers: the converter's rope handling only looks at config.json, and two layers convert in
seconds instead of a minute. Nothing of ropeconv is used to read the results.

The converter runs with the transformers release llama.cpp requires (4.57.6, see venvs.py), on the folders
exactly as ropeconv wrote them (their tokenizer class is one 4.57 loads: nothing is renamed here).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from engines.venvs import llama_cpp_converter

LAYERS = 2
ROPE_TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")


def small_smollm2(source: Path, dest: Path) -> Path:
    """SmolLM2's folder with only its first LAYERS layers (a prefix of the real network)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    if (dest / "config.json").exists():
        return dest
    dest.mkdir(parents=True)
    keep = {}
    with safe_open(str(source / "model.safetensors"), "pt") as handle:
        for name in handle.keys():
            if ".layers." in name and int(name.split(".layers.")[1].split(".")[0]) >= LAYERS:
                continue
            keep[name] = handle.get_tensor(name)
    save_file(keep, str(dest / "model.safetensors"), metadata={"format": "pt"})
    for item in source.iterdir():
        if item.name not in ("model.safetensors", "config.json") and item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, dest / item.name)
    config = json.loads((source / "config.json").read_text())
    config["num_hidden_layers"] = LAYERS
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return dest


def convert(folder: Path, out: Path, stub_vocab: bool = False) -> Path:
    """llama.cpp's converter on `folder` (f32); stub_vocab: through vocab_stub.py (see its docstring)."""
    cmd, env = llama_cpp_converter()
    if stub_vocab:
        cmd = [cmd[0], str(Path(__file__).parent / "vocab_stub.py"), *cmd[1:]]
    proc = subprocess.run(cmd + [str(folder), "--outfile", str(out), "--outtype", "f32"], capture_output=True,
                          text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf.py failed on {folder}:\n{proc.stderr[-3000:]}")
    return out


def rope_metadata(path: Path) -> dict:
    """{short key: value} of context_length and rope.* keys, plus the rope tensors (float lists)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    arch_field = reader.fields["general.architecture"]
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
    out: dict = {}
    for name, fld in reader.fields.items():
        if not name.startswith(f"{arch}."):
            continue
        short = name[len(arch) + 1:]
        if short != "context_length" and not short.startswith("rope."):
            continue
        value = fld.contents()
        out[short] = value
    for tensor in reader.tensors:
        if tensor.name in ROPE_TENSORS:
            out[tensor.name] = [float(x) for x in tensor.data.reshape(-1)]
    out["arch"] = arch
    return out
