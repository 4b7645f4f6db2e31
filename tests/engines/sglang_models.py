"""How each family's model file in the sglang 0.5.23 wheel calls get_rope, reproduced (importing the model
files needs the server's attention, quantization and parallel layers).

`MODELS[model_type]` = (file under sglang/srt/models, how it takes (θ, rope_scaling), rotary dim,
is_neox_style). `SOURCE[file]` lists the lines each reproduction relies on; tests/test_conformance_sglang.py
asserts they are still in the wheel. Plain Python: imported by the runner and by the test.
"""


def v5_or_legacy(config):
    """llama.py:322-328 / qwen3.py:379-384 / get_rope_config (utils/hf_transformers/common.py:501)."""
    params = getattr(config, "rope_parameters", None)
    if params is not None:
        return params.get("rope_theta", getattr(config, "rope_theta", 10000)), params
    return getattr(config, "rope_theta", 10000), getattr(config, "rope_scaling", None)


def theta_only(config):
    """The file passes base only: no rope_scaling reaches get_rope (plain RoPE at θ)."""
    return config.rope_parameters["rope_theta"], None


def olmo2(config):
    """olmo2.py:133-137: config.rope_scaling on full-attention layers."""
    return config.rope_parameters["rope_theta"], config.rope_scaling


def deepseek(config):
    """deepseek_v2.py:2605-2609, 2065-2066: any scaling runs as deepseek_yarn."""
    params = config.rope_parameters
    scaling = dict(params, rope_type="deepseek_yarn") if params.get("rope_type") != "default" else None
    return params["rope_theta"], scaling


def head_or_split(c):
    return getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads


def split(c):
    return c.hidden_size // c.num_attention_heads


def partial(c):
    return int(getattr(c, "partial_rotary_factor", 1) * head_or_split(c))


MODELS = {
    "llama": ("llama.py", v5_or_legacy, partial, True),
    "mistral": ("mistral.py", v5_or_legacy, partial, True),  # MistralForCausalLM(LlamaForCausalLM)
    "phi3": ("llama.py", v5_or_legacy, partial, True),  # Phi3ForCausalLM is in llama.py
    "qwen2": ("qwen2.py", v5_or_legacy, head_or_split, True),
    "qwen2_vl_text": ("qwen2.py", v5_or_legacy, head_or_split, True),  # the language model is Qwen2Model
    "qwen2_5_vl_text": ("qwen2.py", v5_or_legacy, head_or_split, True),
    "qwen2_moe": ("qwen2_moe.py", v5_or_legacy, split, True),
    "qwen3": ("qwen3.py", v5_or_legacy, head_or_split, True),
    "cohere": ("commandr.py", v5_or_legacy, split, False),
    "olmo2": ("olmo2.py", olmo2, split, True),
    "deepseek_v3": ("deepseek_v2.py", deepseek, lambda c: c.qk_rope_head_dim, False),
    "mixtral": ("mixtral.py", theta_only, split, True),
    "phi": ("phi.py", theta_only, lambda c: int(c.partial_rotary_factor * split(c)), True),  # phi.py:61-64
    "gemma": ("gemma.py", theta_only, lambda c: c.head_dim, True),
    "gemma2": ("gemma2.py", theta_only, lambda c: c.head_dim, True),
    "stablelm": ("stablelm.py", theta_only,  # stablelm.py:114-117
                 lambda c: int(split(c) * getattr(c, "rope_pct", getattr(c, "partial_rotary_factor", 1))), True),
    "olmo": ("olmo.py", theta_only, split, True),
}
# No SGLang model file: registry.py falls back to its Transformers backend (transformers' own rotary class)
TRANSFORMERS_BACKEND = {"gpt_neox": "GPTNeoXForCausalLM", "falcon": "FalconForCausalLM", "glm": "GlmForCausalLM"}
# Gemma 3: get_rope gets {"rope_type": "default"} on every layer (gemma3_causal.py:202, 216) and serves only the
# CPU path; the GPU path uses the file's own Gemma3RotaryEmbedding (gemma3_causal.py:415): not run here.
NOT_RUN = {"gemma3_text": "gemma3_causal.py's Gemma3RotaryEmbedding (the served GPU path) needs the model file"}

SOURCE = {
    "llama.py": ('rope_theta = rope_parameters.get("rope_theta", 10000)', "rope_scaling = rope_parameters",
                 'partial_rotary_factor = getattr(config, "partial_rotary_factor", 1)',
                 "rope_scaling=rope_scaling,", 'rope_is_neox_style = getattr(config, "rope_is_neox_style", True)',
                 "class Phi3ForCausalLM"),
    "mistral.py": ("class MistralForCausalLM(LlamaForCausalLM):",),
    "qwen2.py": ("rope_theta, rope_scaling = get_rope_config(config)", "rope_scaling=rope_scaling,"),
    "qwen2_moe.py": ("rope_theta, rope_scaling = get_rope_config(config)", "rope_scaling=rope_scaling,"),
    "qwen3.py": ("rope_scaling = config.rope_parameters", "rope_scaling=rope_scaling,"),
    "commandr.py": ("self.rope_scaling = config.rope_parameters", "rope_scaling=self.rope_scaling,",
                    "is_neox_style=False,"),
    "olmo2.py": ("self.config.rope_scaling", "rope_scaling=self.rope_scaling,"),
    "deepseek_v2.py": ('rope_scaling["rope_type"] = "deepseek_yarn"', "rotary_dim=qk_rope_head_dim,",
                       'is_neox_style = not getattr(config, "rope_interleave", True)'),
    "mixtral.py": ("base=int(self.rope_theta),",),
    "phi.py": ("config.partial_rotary_factor\n", "base=rope_theta,\n        )",),
    "gemma.py": ("base=self.rope_theta,\n            is_neox_style=True,\n        )",),
    "gemma2.py": ("base=self.rope_theta,\n                is_neox_style=True,\n            )",),
    "stablelm.py": ('config, "rope_pct", getattr(config, "partial_rotary_factor", 1)', 'base=self.config.rope_parameters["rope_theta"],\n            )',),
    "olmo.py": ("base=self.rope_theta,\n        )",),
}


def rope_args(config) -> dict:
    file, rope, rotary, neox = MODELS[config.model_type]
    theta, scaling = rope(config)
    if scaling is not None and getattr(config, "original_max_position_embeddings", None) and file == "llama.py":
        scaling["original_max_position_embeddings"] = config.original_max_position_embeddings  # llama.py:329-333
    if file == "deepseek_v2.py":
        neox = not getattr(config, "rope_interleave", True)
    return dict(head_size=head_or_split(config) if file != "deepseek_v2.py" else config.qk_rope_head_dim,
                rotary_dim=rotary(config), max_position=config.max_position_embeddings,
                base=int(theta) if file == "mixtral.py" else theta, rope_scaling=scaling, is_neox_style=neox)
