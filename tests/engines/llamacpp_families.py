"""Tiny random-weight models of each family for llama.cpp's converter (tests/test_conformance_llamacpp.py).

Each model is the family's tiny config from tests/engines/cases.py (SOURCES/SMALL), with vocab_size
raised to SmolLM2's tokenizer, built by the installed transformers (v5) with a fixed seed and saved
with `save_pretrained`; SmolLM2's tokenizer files (a BPE tokenizer.json whose pre-tokenizer hash the
converter knows) are copied next to it.

Stub (not RoPE): for the families in STUB_VOCAB the converter's set_vocab wants a sentencepiece
tokenizer.model or a tokenizer it recognises by hash; `vocab_stub.py` (next to this file) imports the
converter, replaces that class's set_vocab with a minimal writer of vocab_size plain tokens, then runs
the converter's own main. Everything else — hparams, rope keys, rope tensors — is the converter's code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from engines.cases import SMALL, SOURCES, build_source

# families the 0.3.36 converter cannot convert (none: with the transformers 4.57.6 it requires it converts
# every family of the matrix; under transformers 5 it failed on gpt_neox, whose rotary_pct v5 moves)
UNSUPPORTED: dict[str, str] = {}
# families whose set_vocab refuses SmolLM2's BPE tokenizer: set_vocab is stubbed (vocab_stub.py)
STUB_VOCAB: dict[str, str] = {
    "qwen2": "Qwen2Model.set_vocab: tokenizer.model, else a BPE pre-tokenizer hash it knows (SmolLM2's is not)",
    "phi3": "Phi3MiniModel.set_vocab reads a sentencepiece tokenizer.model",
    "gemma": "GemmaModel.set_vocab reads a sentencepiece tokenizer.model",
    "gemma2": "Gemma2Model.set_vocab reads a sentencepiece tokenizer.model",
    "glm": "GlmModel.set_vocab looks up GLM's own added tokens (<|user|>)",
}
# config keys as the family publishes them, which the converter needs (not RoPE scaling)
PUBLISHED_KEYS: dict[str, dict] = {
    # DeepSeek V3 publishes num_key_value_heads = num_attention_heads; the converter splits kv_b by it
    "deepseek_v3": {"num_key_value_heads": SMALL["num_attention_heads"]},
}
SEED = 0


def tokenizer_folder() -> Path:
    from ropeconv import smollm

    return smollm.ensure_folder()


def build_model(family: str, root: Path) -> Path:
    """The family's tiny model with random weights and SmolLM2's tokenizer, saved once under root."""
    import torch
    import transformers
    from transformers import AutoConfig

    folder = root / "models" / family
    if (folder / "config.json").exists():
        return folder
    source = build_source(family, root)
    tok = tokenizer_folder()
    vocab = json.loads((tok / "config.json").read_text())["vocab_size"]
    extra = PUBLISHED_KEYS.get(family, {})
    config = AutoConfig.from_pretrained(source, **extra)
    for part in (config, getattr(config, "text_config", None)):
        if part is not None:
            part.vocab_size = vocab
    arch = SOURCES[family][2]
    torch.manual_seed(SEED)
    model = getattr(transformers, arch)(config)
    model.save_pretrained(folder)
    # save_pretrained writes the config in v5 shape; keep the source's config.json (the published shape)
    shutil.copy2(source / "config.json", folder / "config.json")
    saved = json.loads((folder / "config.json").read_text())
    target = saved.get("text_config", saved)
    target.update(vocab_size=vocab, **extra)
    if target is not saved:
        saved["vocab_size"] = vocab
    (folder / "config.json").write_text(json.dumps(saved, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tok / name, folder / name)
    return folder
