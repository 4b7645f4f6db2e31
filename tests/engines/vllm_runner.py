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
The arguments of get_rope are the ones the family's model file passes (tests/engines/vllm_models.py,
reproduced with the source lines it relies on; the test asserts they are still in the wheel). The
config is patched the way vLLM loads it: patch_rope_parameters (vllm/transformers_utils/config.py,
run unchanged) on the config and its text config.

The served length is vllm/config/model.py's `_get_and_verify_max_len`, run unchanged with what it
calls (iter_rope_parameters, is_rope_parameters_nested, patch_rope_parameters, patch_legacy_rope_type
from vllm/transformers_utils/config.py; getattr_iter from vllm/config/utils.py;
ModelArchConfigConvertorBase.derive_max_model_len_and_key from
vllm/transformers_utils/model_arch_config_convertor.py), all taken out of the wheel's files (the
modules import the engine). Stubbed there, none of it about lengths: the logger (warnings), envs
(VLLM_ALLOW_LONG_MAX_MODEL_LEN = False, its default), current_platform.check_max_model_len (a
hardware cap: returns the length). It runs without and with --max-model-len (the case's
max_model_len); a length vLLM refuses is reported as the error.

A case may carry "hf_overrides" (what `vllm serve --hf-overrides JSON` passes): the folder's config is
then loaded as vLLM 0.33's ModelConfig loads it — flat values applied by get_config's config.update before
patch_rope_parameters, dict values split off first (the four-line loop in ModelConfig.__post_init__,
reproduced: it is inline code) and applied afterwards by ModelConfig._apply_dict_overrides and
_update_nested (vllm/config/model.py, run unchanged).

argv: wheel root, cases JSON file [{"id", "folder", "max_model_len" (optional), "hf_overrides" (optional)}],
the wheel file.
"""

import json
import logging
import sys
import types
import zipfile

import torch
from torch import nn

from runner_common import cache_result, error_result, extract, pkg  # this folder: the runner runs as a script
from vllm_models import TRANSFORMERS_BACKEND, rope_args

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


def length_code(wheel):
    """(patch_rope_parameters, max_len(hf_text_config, max_model_len), apply_dict_overrides(config, dict))
    run from the wheel's own files."""
    from typing import Any, Callable, Iterator, Sequence

    from transformers import PreTrainedConfig
    from transformers.configuration_utils import ALLOWED_LAYER_TYPES

    class Logger(logging.Logger):
        def warning_once(self, *args, **kwargs):
            self.warning(*args, **kwargs)

    logger = Logger("vllm")
    ns = dict(Any=Any, Callable=Callable, Iterator=Iterator, Sequence=Sequence, PreTrainedConfig=PreTrainedConfig,
              ALLOWED_LAYER_TYPES=ALLOWED_LAYER_TYPES, ModelArchitectureConfig=object, logger=logger,
              envs=types.SimpleNamespace(VLLM_ALLOW_LONG_MAX_MODEL_LEN=False),
              current_platform=types.SimpleNamespace(check_max_model_len=lambda n: n))
    with zipfile.ZipFile(wheel) as zf:
        def source(path):
            return zf.read(path).decode(), path
        extract(*source("vllm/config/utils.py"), ["getattr_iter"], ns)
        sys.modules["vllm.config"].utils = types.SimpleNamespace(getattr_iter=ns["getattr_iter"])
        sys.modules["vllm.config.utils"] = sys.modules["vllm.config"].utils  # patch_rope_parameters imports it
        extract(*source("vllm/transformers_utils/config.py"), ["is_rope_parameters_nested", "iter_rope_parameters",
                                                             "patch_legacy_rope_type", "patch_rope_parameters"], ns)
        extract(*source("vllm/transformers_utils/model_arch_config_convertor.py"),
                ["ModelArchConfigConvertorBase.derive_max_model_len_and_key"], ns)
        extract(*source("vllm/config/model.py"), ["_get_and_verify_max_len", "ModelConfig._apply_dict_overrides",
                                                  "ModelConfig._update_nested"], ns)

    def max_len(text_config, max_model_len):
        derived = ns["derive_max_model_len_and_key"](types.SimpleNamespace(hf_text_config=text_config))
        arch = types.SimpleNamespace(derived_max_model_len_and_key=derived)
        try:
            return ns["_get_and_verify_max_len"](text_config, arch, None, max_model_len, False, None)
        except ValueError as exc:  # vLLM refuses the asked length
            return f"ValueError: {str(exc)[:200]}"
    model_config = types.SimpleNamespace()  # the methods' `self`: they call only self._update_nested
    model_config._update_nested = lambda target, updates: ns["_update_nested"](model_config, target, updates)

    def apply_dict_overrides(config, overrides):
        ns["_apply_dict_overrides"](model_config, config, overrides)
    return ns["patch_rope_parameters"], max_len, apply_dict_overrides


def load_config(case, patch, apply_dict_overrides):
    """The case's config as vLLM's ModelConfig holds it after get_config (with any --hf-overrides)."""
    from transformers import AutoConfig

    overrides = case.get("hf_overrides") or {}
    flat = {k: v for k, v in overrides.items() if not isinstance(v, dict)}  # ModelConfig.__post_init__
    nested = {k: v for k, v in overrides.items() if isinstance(v, dict)}
    config = AutoConfig.from_pretrained(case["folder"])
    if flat:
        config.update(flat)  # get_config, before it patches the rope parameters
    patch(config)  # as vllm/transformers_utils/config.py get_config does, on both
    patch(config.get_text_config())
    if nested:
        apply_dict_overrides(config, nested)  # ModelConfig.__post_init__, after get_config
    return config.get_text_config()


def main():
    install_stubs()
    from vllm.model_executor.layers.rotary_embedding import get_rope

    patch, max_len, apply_dict_overrides = length_code(sys.argv[3])
    results = {}
    for case in json.load(open(sys.argv[2])):
        try:
            config = load_config(case, patch, apply_dict_overrides)
            served = {"default": max_len(config, None), "asked": max_len(config, case.get("max_model_len"))}
            if config.model_type in TRANSFORMERS_BACKEND:  # transformers' own rotary class (see vllm_models.py)
                results[case["id"]] = {"ok": True, "backend": "transformers", "served": served}
                continue
            args = rope_args(config)
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
            results[case["id"]] = cache_result(rope, caches, max_model_len=MAX_MODEL_LEN[0], served=served)
        except Exception as exc:  # the engine refusing the config is a result
            results[case["id"]] = error_result(exc)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
