"""Shared fixtures: tiny random checkpoints of real transformers families, built on the spot."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helper modules beside the tests (hub_server, …)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
pytest_plugins = ["hub_server"]  # the local Hub-compatible server and its fixtures (tests/hub_server.py)
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=128, max_position_embeddings=4096)

# model_type -> extra config kwargs for a tiny model of that family
FAMILY_KWARGS: dict[str, dict] = {
    "llama": {}, "mistral": {}, "qwen2": {}, "olmo": {}, "olmo2": {}, "gemma": {"head_dim": 16},
    "mixtral": {"num_local_experts": 2, "num_experts_per_tok": 1},
    "qwen2_moe": {"num_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 32,
                  "shared_expert_intermediate_size": 32},
    "qwen3": {"head_dim": 16, "max_position_embeddings": 40960},
    "phi3": {"pad_token_id": 0},
    "phi": {"partial_rotary_factor": 0.5},
    "gemma2": {"head_dim": 16},
    "gemma3_text": {"head_dim": 16, "sliding_window": 64, "layer_types": ["sliding_attention", "full_attention"]},
    "gpt_neox": {"rotary_pct": 0.25},
    "stablelm": {},
    "falcon": {"num_kv_heads": 2, "new_decoder_architecture": True, "alibi": False},
    "cohere": {},
    "glm": {"head_dim": 16, "pad_token_id": 0, "eos_token_id": 1},
    "glm4": {"head_dim": 16, "pad_token_id": 0, "eos_token_id": 1},
    "deepseek_v2": {"kv_lora_rank": 16, "q_lora_rank": 32, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
                    "v_head_dim": 8, "n_routed_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 32,
                    "n_shared_experts": 1, "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1},
    "deepseek_v3": {"kv_lora_rank": 16, "q_lora_rank": 32, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
                    "v_head_dim": 8, "n_routed_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 32,
                    "n_shared_experts": 1, "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1},
}


def build_tiny(model_type: str, folder: Path, *, legacy: bool = False, **overrides) -> Path:
    """Save a tiny random model of `model_type` to `folder` (as transformers v5 saves it).

    legacy=True rewrites config.json into the transformers 4.x shape: rope_scaling + top-level
    rope_theta, no rope_parameters.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    kwargs = {**COMMON, **FAMILY_KWARGS.get(model_type, {}), **overrides}
    config = AutoConfig.for_model(model_type, **kwargs)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    if legacy:
        path = folder / "config.json"
        cfg = json.loads(path.read_text())
        params = cfg.pop("rope_parameters", None) or {}
        if all(isinstance(v, dict) for v in params.values()) and params:  # nested, as Gemma 3 publishes it
            cfg["rope_local_base_freq"] = params.get("sliding_attention", {}).get("rope_theta", 10000.0)
            params = params.get("full_attention", {})
        cfg["rope_theta"] = params.get("rope_theta", 10000.0)
        scaling = {k: v for k, v in params.items() if k not in ("rope_theta", "partial_rotary_factor")}
        cfg["rope_scaling"] = scaling if scaling.get("rope_type", "default") != "default" else None
        if "partial_rotary_factor" in params and model_type != "gpt_neox":
            cfg["partial_rotary_factor"] = params["partial_rotary_factor"]
        path.write_text(json.dumps(cfg, indent=2))
    return folder


@pytest.fixture
def tiny(tmp_path):
    """tiny(model_type, **overrides) -> folder of a freshly built tiny model."""
    counter = iter(range(1000))

    def make(model_type: str = "llama", legacy: bool = False, **overrides) -> Path:
        return build_tiny(model_type, tmp_path / f"{model_type}-{next(counter)}", legacy=legacy, **overrides)

    return make


def rotary_modules(model):
    """The language model's rotary embedding module(s) (vision rotaries excluded)."""
    return [m for m in model.modules()
            if type(m).__name__.endswith("RotaryEmbedding") and "Vision" not in type(m).__name__]


def loaded_rope(model, layer_type: str | None = None) -> tuple[list[float], float]:
    """(inv_freq, attention_scaling) as the loaded model holds them."""
    rotary = rotary_modules(model)[0]
    prefix = f"{layer_type}_" if layer_type and hasattr(rotary, f"{layer_type}_inv_freq") else ""
    inv = getattr(rotary, f"{prefix}inv_freq")
    scaling = getattr(rotary, f"{prefix}attention_scaling")
    return inv.double().tolist(), float(scaling)


@contextmanager
def transformers_warnings():
    """Collect what transformers logs while loading (rope validation only warns; we treat it as an error)."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    logger = logging.getLogger("transformers")
    handler = Collect()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def rel_err(a, b) -> float:
    return max(abs(x - y) / abs(y) for x, y in zip(a, b)) if len(a) == len(b) else float("inf")


def save_char_tokenizer(folder: Path, vocab: int = 128) -> None:
    """One token per ASCII character (id = code point), so texts map to ids exactly (the probe's and
    finetune's tiny models)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={chr(i): i for i in range(vocab)}, unk_token="?"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="\x00", unk_token="?").save_pretrained(folder)
