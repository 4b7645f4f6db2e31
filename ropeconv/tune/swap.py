"""Applying a candidate to a loaded model in place: the rotary modules' inverse frequencies and
attention scaling are replaced, so one loaded model serves every trial (loading SmolLM2 takes
seconds; swapping takes microseconds).

transformers 5 models hold one rotary module for the decoder (`model.model.rotary_emb`, e.g.
`LlamaRotaryEmbedding`) with the `inv_freq` buffer, its `original_inv_freq` copy, the
`attention_scaling` cos/sin are multiplied by, and `rope_type`, which `dynamic_rope_update` reads
on every forward: "dynamic" recomputes `inv_freq` from the config when the window grows, and
"longrope" picks the long or short set by window length (caching `long_inv_freq`). The swap sets
`rope_type` to "default" so that neither runs: the values swapped in are exactly what the written
config gives for the window being measured (`Candidate.rope(basis, seq_len)` already picks
longrope's long or short factors). Older remote code that keeps one rotary module per attention
layer is handled the same way (every such module is swapped).
"""

from __future__ import annotations

from dataclasses import dataclass

from ropeconv.errors import RopeconvError


@dataclass
class Original:
    """What the model held before the first swap (to put back)."""

    modules: list
    inv_freq: list
    original_inv_freq: list
    attention_scaling: list
    rope_type: list


def rotary_modules(model) -> list:
    """The language model's rotary embedding modules: those holding an `inv_freq` buffer (vision
    rotaries of multimodal models excluded)."""
    found = [m for m in model.modules() if hasattr(m, "inv_freq") and hasattr(m, "attention_scaling")
             and "Vision" not in type(m).__name__]
    if not found:
        raise RopeconvError(f"{type(model).__name__} has no rotary embedding module with inv_freq and attention_scaling",
                            "tune runs transformers ≥ 5 RoPE models (llama, qwen2, mistral, …)")
    for module in found:
        if isinstance(getattr(module, "rope_type", None), dict):
            raise RopeconvError(f"{type(module).__name__} has one RoPE per layer type (sliding/full attention)",
                                "tune supports models with a single RoPE for every layer")
    return found


def save(model) -> Original:
    modules = rotary_modules(model)
    return Original(modules, [m.inv_freq.clone() for m in modules],
                    [getattr(m, "original_inv_freq", m.inv_freq).clone() for m in modules],
                    [m.attention_scaling for m in modules], [getattr(m, "rope_type", None) for m in modules])


def apply(model, inv_freq: list[float], attention_factor: float) -> None:
    """Make every rotary module of `model` use `inv_freq` (d/2 values) and `attention_factor`."""
    import torch

    for module in rotary_modules(model):
        current = module.inv_freq
        if current.numel() != len(inv_freq):
            raise RopeconvError(f"the model's rotary module has {current.numel()} frequencies, the candidate "
                                f"{len(inv_freq)}", "the config's head_dim or partial rotary factor disagrees "
                                "with the loaded model")
        values = torch.tensor(inv_freq, dtype=torch.float32, device=current.device)
        # copy_ keeps the buffer's address (CUDA graphs replay from it); float32 as transformers computes
        current.copy_(values.to(current.dtype))
        if hasattr(module, "original_inv_freq"):
            module.original_inv_freq.copy_(values.to(module.original_inv_freq.dtype))
        module.attention_scaling = float(attention_factor)
        module.rope_type = "default"  # no dynamic recomputation, no longrope switch: the values above rule
        if hasattr(module, "long_inv_freq"):
            del module.long_inv_freq
        if hasattr(module, "max_seq_len_cached") and hasattr(module, "original_max_seq_len"):
            module.max_seq_len_cached = module.original_max_seq_len


def restore(original: Original) -> None:
    for module, inv, orig, scaling, rope_type in zip(original.modules, original.inv_freq, original.original_inv_freq,
                                                     original.attention_scaling, original.rope_type):
        module.inv_freq.copy_(inv)
        if hasattr(module, "original_inv_freq"):
            module.original_inv_freq.copy_(orig)
        module.attention_scaling = scaling
        if rope_type is not None:
            module.rope_type = rope_type
