"""Runs SGLang's own rotary-embedding code (sglang/srt/layers/rotary_embedding from the published
wheel) on CPU and prints, per case, the rotary class get_rope chose and the inverse frequencies and
attention scaling read back from its cos/sin cache at position 1 (atan2 / hypot), as JSON.

Stubbed — none of it is RoPE; each only lets the files import without the server:
- the `sglang`, `sglang.srt`, `sglang.srt.layers`, `sglang.kernels` package __init__s (they import the
  whole server); the real files are reached through __path__, unchanged;
- sglang.srt.utils: platform probes (is_cuda … → False, is_cpu → True), get_bool_env_var, get_device;
- sglang.srt.platforms.current_platform.is_out_of_tree → False (hardware plugin registry);
- sglang.srt.runtime_context: publish_role / get_exec (deterministic-RL execution context) → None;
- sglang.kernels.fused_op.BaseFusedOp → an nn.Module whose forward is forward_native (the dispatch
  between CUDA/HIP/NPU kernels and the native path);
- sglang.kernels.ops.attention.{rotary_triton, mrope, rope}: GPU kernels, raising if called.
The arguments get_rope receives are the ones the family's model file passes (tests/engines/sglang_models.py,
reproduced with the source lines it relies on; the test asserts they are still in the wheel).

The served length is SGLang's own `get_context_length` and `CONTEXT_LENGTH_KEYS`, taken verbatim out of
sglang/srt/utils/hf_transformers/common.py (the module itself imports the server) and run on the
transformers config object.

argv: wheel root, cases JSON file [{"id", "folder"}].
"""

import json
import os
import sys
import types

import torch
from torch import nn

from runner_common import cache_result, error_result, extract, pkg  # this folder: the runner runs as a script
from sglang_models import MODELS, rope_args

ROOT = sys.argv[1]


def install_stubs():
    for name in ("sglang", "sglang/srt", "sglang/srt/layers", "sglang/kernels"):
        pkg(name.replace("/", "."), f"{ROOT}/{name}")
    pkg("sglang.kernels.ops")
    pkg("sglang.kernels.ops.attention")
    utils = pkg("sglang.srt.utils")
    for name in ("is_cuda", "is_hip", "is_npu", "is_xpu", "is_musa", "is_mps", "cpu_has_amx_support", "support_triton"):
        setattr(utils, name, lambda: False)
    utils.is_cpu = lambda: True
    utils.get_bool_env_var = lambda name, default="false": os.environ.get(name, default).lower() in ("1", "true")
    utils.get_device = lambda *a, **k: "cpu"
    utils.get_compiler_backend = lambda *a, **k: "inductor"
    pkg("sglang.srt.platforms").current_platform = types.SimpleNamespace(is_out_of_tree=lambda: False)
    context = pkg("sglang.srt.runtime_context")
    context.publish_role = lambda: None
    context.get_exec = lambda: None
    context.attention_backends = None

    class BaseFusedOp(nn.Module):
        def forward(self, *args, **kwargs):
            return self.forward_native(*args, **kwargs)

    pkg("sglang.kernels.fused_op").BaseFusedOp = BaseFusedOp
    for name in ("sglang.kernels.ops.attention.rotary_triton", "sglang.kernels.ops.attention.mrope",
                 "sglang.kernels.ops.attention.rope"):
        module = pkg(name)

        def missing(attr, name=name):
            if attr.startswith("__"):
                raise AttributeError(attr)

            def kernel(*args, **kwargs):
                raise RuntimeError(f"{name}.{attr} is a GPU kernel")
            return kernel
        module.__getattr__ = missing


def sglang_context_length():
    """get_context_length from SGLang's own source file (the function and the keys it reads, unchanged)."""
    path = f"{ROOT}/sglang/srt/utils/hf_transformers/common.py"
    return extract(open(path).read(), path, ["get_context_length", "CONTEXT_LENGTH_KEYS"], {})["get_context_length"]


def main():
    install_stubs()
    from transformers import AutoConfig

    from sglang.srt.layers.rotary_embedding.factory import get_rope

    get_context_length = sglang_context_length()
    results = {}
    for case in json.load(open(sys.argv[2])):
        try:
            config = AutoConfig.from_pretrained(case["folder"])
            served = get_context_length(config.get_text_config())  # SGLang's ModelConfig passes hf_text_config
            text = config.get_text_config()
            if text.model_type not in MODELS:  # Transformers backend / not run (see sglang_models.py)
                results[case["id"]] = {"ok": True, "backend": "not run", "served": served}
                continue
            rope = get_rope(**rope_args(text), dtype=torch.float32)
            caches = {name: getattr(rope, name) for name in ("cos_sin_cache", "short_cos_sin_cache", "long_cos_sin_cache")
                      if isinstance(getattr(rope, name, None), torch.Tensor)}
            results[case["id"]] = cache_result(rope, caches, served=served)
        except Exception as exc:  # the engine refusing the config is a result
            results[case["id"]] = error_result(exc)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
