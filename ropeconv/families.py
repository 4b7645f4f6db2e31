"""What ropeconv knows about each model family's position encoding, as data.

Defaults mirror the family's transformers configuration class (the value it uses when
config.json is silent); refusals say why no conversion applies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    position: str = "rope"  # "rope", "alibi" or "absolute"
    default_theta: float = 10000.0
    default_partial: float = 1.0
    methods: tuple[str, ...] | None = None  # None: every method
    methods_reason: str = ""
    interleaved: bool = False  # rotates adjacent pairs (GPT-J style) rather than halves
    trained_context: int | None = None  # when the family advertises more than it was trained on
    note: str = ""
    theta_key: str = "rope_theta"  # the top-level key legacy readers take θ from
    partial_key: str = "partial_rotary_factor"  # ... and the partial rotary fraction
    # values the transformers config class supplies when config.json leaves them out
    config_defaults: tuple[tuple[str, object], ...] = ()
    # per-layer-type RoPE (Gemma 3): transformers v5 needs nested rope_parameters even when the
    # published config is legacy-shaped; the sliding layers' θ lives in `local_theta_key`
    nested_layer_types: tuple[str, ...] = ()
    local_theta_key: str = ""
    local_theta: float = 10000.0
    # linear scaling published with max_position_embeddings already = L0 × factor (vLLM special-cases it)
    linear_max_is_scaled: bool = False
    # the config class leaves head_dim None when config.json has no head_dim key (transformers
    # 4.52–4.57 Mistral/Mixtral, transformers 5 Mixtral): dynamic/yarn/longrope then crash on
    # `None * float`, so the writer fills it in
    head_dim_none_when_absent: bool = False
    # methods whose legacy rope_scaling must have exactly `type` plus these keys, because the
    # family's transformers 4.x config class raises on anything else (Phi-3's LongRoPE: type,
    # short_factor, long_factor with L0 at top level; OLMo 2: type, factor)
    legacy_scaling_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # transformers 5 holds the language model's settings in a text_config sub-config even when
    # config.json is flat (Qwen2-VL, Qwen2.5-VL): a runtime override must be nested there
    text_config_in_v5: bool = False
    # DeepSeek's multi-head latent attention: only qk_rope_head_dim dims rotate, mscale_all_dim also scales the
    # softmax (its own YaRN code honours mscale in every engine), and head_dim stays unset in the config
    mla: bool = False
    # the config key whose true value means this model uses ALiBi instead of RoPE (Falcon's `alibi`)
    alibi_key: str = ""
    # the family's transformers class hard-codes θ (GPT-J): a missing rope_theta is no portability problem
    fixed_theta: bool = False
    # engines whose own code the conformance suite (tests/test_conformance_*.py) ran on this family's outputs;
    # transformers 4 and 5 run every accepted family (engines.SUITE_RUNS_EVERY_FAMILY)
    suites_ran: tuple[str, ...] = ()

    def legacy_keys(self, method: str) -> tuple[str, ...] | None:
        return dict(self.legacy_scaling_keys).get(method)


# Methods vLLM and SGLang implement for these rotary layouts (the others crash or silently run as
# something else there); each restriction carries its reason.
_MLA_METHODS = ("yarn", "ntk")
_MLA_REASON = ("vLLM and SGLang build their DeepSeek-YaRN rotary class for every scaled rope type of an MLA "
               "model: linear and dynamic crash vLLM (KeyError 'original_max_position_embeddings'), llama3 and "
               "longrope silently run as YaRN")
_MROPE_METHODS = ("yarn", "ntk")
_MROPE_REASON = ("with linear, dynamic, llama3 or longrope vLLM builds a one-dimensional rotary class for this "
                 "multimodal (M-RoPE) model and fails on its three-row positions")
_GEMMA3_METHODS = ("linear", "ntk", "yarn", "llama3", "longrope")
_PHI3_LEGACY = (("longrope", ("short_factor", "long_factor")),)
_OLMO_LEGACY = (("linear", ("factor",)), ("dynamic", ("factor",)))
_GEMMA3_REASON = ("dynamic gains no context in vLLM or SGLang for Gemma 3 (vLLM reads its max_position_embeddings "
                  "as already scaled) while transformers needs it to stay the trained length; use yarn")


# the engines besides transformers whose own code the conformance suite runs (see Family.suites_ran)
_RUN3 = ("vllm", "sglang", "llamacpp")

_GEMMA3 = dict(
    default_theta=1e6, note="nested per-layer-type RoPE: only full-attention layers are scaled",
    config_defaults=(("max_position_embeddings", 131072), ("head_dim", 256), ("num_attention_heads", 8)),
    nested_layer_types=("full_attention", "sliding_attention"), local_theta_key="rope_local_base_freq",
    linear_max_is_scaled=True, methods=_GEMMA3_METHODS, methods_reason=_GEMMA3_REASON,
)

_FAMILIES = [
    Family("llama", suites_ran=_RUN3),
    Family("mistral", head_dim_none_when_absent=True, suites_ran=_RUN3),
    Family("mixtral", default_theta=1e6, head_dim_none_when_absent=True, suites_ran=_RUN3),
    Family("qwen2", suites_ran=_RUN3), Family("qwen2_moe", suites_ran=_RUN3),
    Family("qwen3", trained_context=32768,
           note="Qwen3 advertises max_position_embeddings 40960 but was trained at 32768; "
                "Qwen documents YaRN factor 4 over 32768", suites_ran=_RUN3),
    Family("qwen3_moe", trained_context=32768,
           note="Qwen3 advertises max_position_embeddings 40960 but was trained at 32768"),
    Family("qwen2_vl", default_theta=1e6, note="multimodal RoPE: mrope_section is kept",
           methods=_MROPE_METHODS, methods_reason=_MROPE_REASON, text_config_in_v5=True,
           suites_ran=_RUN3),
    Family("qwen2_5_vl", default_theta=1e6, note="multimodal RoPE: mrope_section is kept",
           methods=_MROPE_METHODS, methods_reason=_MROPE_REASON, text_config_in_v5=True,
           suites_ran=_RUN3),
    Family("phi3", methods=("longrope",), legacy_scaling_keys=_PHI3_LEGACY,
           methods_reason="transformers' Phi3 accepts only default or longrope RoPE and raises on others",
           suites_ran=_RUN3),
    Family("phimoe", methods=("longrope",), legacy_scaling_keys=_PHI3_LEGACY,
           methods_reason="transformers' PhiMoE accepts only default or longrope RoPE and raises on others"),
    Family("phi", default_partial=0.5, suites_ran=("sglang", "llamacpp")),
    Family("gemma", suites_ran=_RUN3), Family("gemma2", suites_ran=_RUN3),
    Family("gemma3", **_GEMMA3), Family("gemma3_text", **_GEMMA3, suites_ran=("vllm", "llamacpp")),
    Family("gpt_neox", default_partial=0.25, note="reads rotary_pct and rotary_emb_base",
           theta_key="rotary_emb_base", partial_key="rotary_pct", suites_ran=("llamacpp",)),
    Family("stablelm", default_partial=0.25, suites_ran=_RUN3),
    Family("persimmon", default_partial=0.5),
    Family("falcon", note="RoPE only when alibi is false", alibi_key="alibi", suites_ran=("vllm", "llamacpp")),
    Family("olmo", legacy_scaling_keys=_OLMO_LEGACY, suites_ran=("sglang", "llamacpp")),
    Family("olmo2", legacy_scaling_keys=_OLMO_LEGACY, suites_ran=("sglang", "llamacpp")),
    Family("olmo3"),
    Family("cohere", default_theta=500000.0, interleaved=True, suites_ran=_RUN3),
    Family("cohere2", default_theta=500000.0, interleaved=True),
    Family("glm", default_partial=0.5, interleaved=True, suites_ran=("llamacpp",)),
    Family("glm4", default_partial=0.5, interleaved=True),
    Family("deepseek_v2", note="rotates only qk_rope_head_dim dims; mscale_all_dim also scales the softmax",
           methods=_MLA_METHODS, methods_reason=_MLA_REASON, mla=True),
    Family("deepseek_v3", note="rotates only qk_rope_head_dim dims; mscale_all_dim also scales the softmax",
           methods=_MLA_METHODS, methods_reason=_MLA_REASON, mla=True, suites_ran=_RUN3),
    Family("granite"), Family("starcoder2"), Family("internlm2"), Family("exaone"),
    Family("gptj", methods=(),
           methods_reason="transformers' GPT-J hard-codes θ = 10000 and has no RoPE scaling support",
           fixed_theta=True),
    Family("bloom", position="alibi"),
    Family("mpt", position="alibi"),
    Family("gpt2", position="absolute"),
    Family("gpt_bigcode", position="absolute"),
    Family("opt", position="absolute"),
    Family("bert", position="absolute"),
]

FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILIES}

POSITION_EXPLAINED = {
    "alibi": ("ALiBi (a linear distance penalty on attention scores), not RoPE: it extrapolates "
              "without conversion and cannot be converted to RoPE without pre-training"),
    "absolute": ("learned absolute position embeddings, not RoPE: the position table ends at the "
                 "trained length, so no frequency scaling applies; extending needs training"),
}


def family_of(model_type: str | None) -> Family | None:
    return FAMILIES.get(model_type or "")


# The few traits ropeconv also applies to model types it has no row for, by their name's prefix (a newer
# release of the family, e.g. a DeepSeek or Gemma 3 variant): the only place model types are matched by prefix.


def is_mla(model_type: str) -> bool:
    """DeepSeek's multi-head latent attention layout (Family.mla)."""
    family = family_of(model_type)
    return family.mla if family else model_type.startswith("deepseek")


def publishes_scaled_max(model_type: str) -> bool:
    """max_position_embeddings already holds L0·factor for linear scaling (Family.linear_max_is_scaled)."""
    family = family_of(model_type)
    return family.linear_max_is_scaled if family else model_type.startswith("gemma3")
