"""Runs vLLM's own rotary-embedding code (vllm/model_executor/layers/rotary_embedding from the
published wheel) on CPU and prints, per case, the class get_rope chose and the inverse frequencies and
attention scaling read back from its cos/sin cache at position 1 (atan2 / hypot), as JSON.

Stubbed — none of it is RoPE; each only lets the files import without the engine:
- the `vllm`, `vllm.model_executor`, `vllm.model_executor.layers` package __init__s (they import the
  engine); the real files are reached through __path__, unchanged;
- vllm.model_executor.custom_op.CustomOp / PluggableLayer → nn.Module with a no-op `register`
  decorator, forward = forward_native (the dispatch between CUDA/ROCm/CPU kernels);
- vllm.platforms.current_platform: every is_* probe False except is_cpu (hardware detection);
- vllm._aiter_ops.rocm_aiter_ops: ROCm kernels, disabled;
- vllm.logger.init_logger → logging.getLogger; vllm.utils.torch_utils (custom-op registration: a
  no-op at import; async copies), vllm.utils.flashinfer.has_flashinfer → False, vllm.triton_utils (`triton.jit` returns
  the function undecorated: GPU kernels, never called on CPU), vllm.distributed: kernels and process
  groups, raising if called;
- vllm.config.get_current_vllm_config → an object whose model_config.max_model_len is the
  max_position_embeddings passed (LongRoPE picks its factor set from the served length: that is
  the one number this runner supplies, and it is reported).
The arguments of get_rope are taken the way vllm/model_executor/models/llama.py's LlamaAttention
takes them (head_dim, max_position_embeddings, config.rope_parameters; reproduced in `llama_rope_args`).

argv: wheel root, cases JSON file [{"id", "folder", "max_model_len" (optional)}].
"""

import json
import logging
import sys
import types

import torch
from torch import nn

from runner_common import cache_result, error_result, pkg  # this folder: the runner runs as a script

ROOT = sys.argv[1]
MAX_MODEL_LEN = [None]


def raising(name):
    def missing(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def kernel(*args, **kwargs):
            raise RuntimeError(f"{name}.{attr} is a kernel or process-group call")
        return kernel
    return missing


def install_stubs():
    for name in ("vllm", "vllm/model_executor", "vllm/model_executor/layers"):
        pkg(name.replace("/", "."), f"{ROOT}/{name}")

    class CustomOp(nn.Module):
        @classmethod
        def register(cls, name):
            return lambda op: op

        def __init__(self, *args, enforce_enable=False, **kwargs):
            super().__init__()

        def enabled(self):
            return False

        def forward(self, *args, **kwargs):
            return self.forward_native(*args, **kwargs)

    custom = pkg("vllm.model_executor.custom_op")
    custom.CustomOp = CustomOp
    custom.PluggableLayer = CustomOp

    class Platform:
        def __getattr__(self, attr):
            if attr.startswith("is_"):
                return lambda *a, **k: attr == "is_cpu"
            raise AttributeError(attr)

    pkg("vllm.platforms").current_platform = Platform()
    pkg("vllm._aiter_ops").rocm_aiter_ops = types.SimpleNamespace(
        is_triton_rotary_embed_enabled=lambda: False, get_triton_rotary_embedding_op=lambda: None)
    pkg("vllm.logger").init_logger = logging.getLogger
    pkg("vllm.utils")
    for name in ("vllm.utils.torch_utils", "vllm.triton_utils", "vllm.distributed"):
        pkg(name).__getattr__ = raising(name)
    # Triton kernels (M-RoPE, GPU only) are decorated at import time: the decorator returns the function
    jit = types.SimpleNamespace(jit=lambda fn=None, **k: fn if fn is not None else (lambda f: f))
    sys.modules["vllm.triton_utils"].triton = jit
    sys.modules["vllm.triton_utils"].tl = types.SimpleNamespace(constexpr=int)
    # registering a torch custom op (for the compiled graph) at import time: nothing to register here
    sys.modules["vllm.utils.torch_utils"].direct_register_custom_op = lambda *a, **k: None
    pkg("vllm.utils.flashinfer").has_flashinfer = lambda: False
    config = pkg("vllm.config")
    config.get_current_vllm_config = lambda: types.SimpleNamespace(
        model_config=types.SimpleNamespace(max_model_len=MAX_MODEL_LEN[0]))


def llama_rope_args(config):
    """vllm/model_executor/models/llama.py: LlamaDecoderLayer / LlamaAttention's get_rope call."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return dict(head_size=head_dim, max_position=getattr(config, "max_position_embeddings", 8192),
                rope_parameters=getattr(config, "rope_parameters", None), is_neox_style=True)


def main():
    install_stubs()
    from transformers import AutoConfig

    from vllm.model_executor.layers.rotary_embedding import get_rope

    results = {}
    for case in json.load(open(sys.argv[2])):
        try:
            config = AutoConfig.from_pretrained(case["folder"]).get_text_config()
            args = llama_rope_args(config)
            MAX_MODEL_LEN[0] = case.get("max_model_len") or args["max_position"]
            rope = get_rope(**args, dtype=torch.float32)
            if hasattr(rope, "long_short_cos_sin_cache"):
                # LongRoPE: short rows [0, L0), long rows after; forward() offsets every position by L0
                # when use_long_rope (max_model_len > L0), so position 1 reads row L0 + 1
                cache = rope.long_short_cos_sin_cache
                offset = rope.original_max_position_embeddings if rope.use_long_rope else 0
                caches = {"cos_sin_cache": cache[offset:]}
            else:
                caches = {"cos_sin_cache": rope.cos_sin_cache}
            results[case["id"]] = cache_result(rope, caches, max_model_len=MAX_MODEL_LEN[0])
        except Exception as exc:  # the engine refusing the config is a result
            results[case["id"]] = error_result(exc)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
