"""How each family's model file in the vllm 0.33.0 wheel calls get_rope, reproduced (importing the model
files needs vLLM's parallel linear layers, attention backends, quantization and compilation decorators).

`MODELS[model_type]` = (file under vllm/model_executor/models, head size, is_neox_style). The rotary
dimension, θ and the scaling come from `rope_parameters` (get_rope reads partial_rotary_factor there).
`SOURCE[file]` lists the lines each reproduction relies on; tests/test_conformance_vllm.py asserts they
are still in the wheel, so a change in the engine fails the suite. Plain Python: imported by the
runner (inside the engine environment) and by the test.
"""


def head_or_split(config):
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def split(config):
    return config.hidden_size // config.num_attention_heads


def head_dim(config):
    return config.head_dim


def qk_rope(config):
    return config.qk_rope_head_dim


MODELS = {
    "llama": ("llama.py", head_or_split, True),  # llama.py:158-159, 241-248
    "mistral": ("mistral.py", head_or_split, True),  # MistralAttention(LlamaAttention): llama.py's call
    "phi3": ("phi3.py", head_or_split, True),  # Phi3ForCausalLM(LlamaForCausalLM)
    "mixtral": ("mixtral.py", head_or_split, True),  # mixtral.py:173-175, 196-201
    "qwen2": ("qwen2.py", split, True),  # qwen2.py:150, 179-184
    "qwen2_vl": ("qwen2.py", split, True),  # the language model is qwen2.py's (M-RoPE from rope_parameters)
    "qwen2_5_vl": ("qwen2.py", split, True),
    "qwen2_vl_text": ("qwen2.py", split, True),  # the text config's model_type (transformers 5)
    "qwen2_5_vl_text": ("qwen2.py", split, True),
    "qwen2_moe": ("qwen2_moe.py", split, True),  # qwen2_moe.py:225, 250-255
    "qwen3": ("qwen3.py", head_or_split, True),  # qwen3.py:100, 123-129
    "gemma": ("gemma.py", head_dim, True),  # gemma.py:177-182
    "gemma2": ("gemma2.py", head_dim, True),  # gemma2.py:147-152
    "gemma3_text": ("gemma3.py", head_dim, True),  # gemma3.py:157-163, rope_parameters[layer_type]
    "stablelm": ("stablelm.py", split, True),  # stablelm.py:120, 149-153
    "falcon": ("falcon.py", split, True),  # falcon.py:110, 166-172
    "cohere": ("commandr.py", head_or_split, False),  # commandr.py:187-189, 227-232
    "deepseek_v3": ("deepseek_v2.py", qk_rope, False),  # deepseek_v2.py:1115-1126 (MLA attention)
}
# Architectures vLLM 0.33.0 serves through its Transformers backend (registry.py maps them to
# ("transformers", "TransformersForCausalLM")): the rotary class is transformers' own, run by the
# transformers ≥ 5 suite.
TRANSFORMERS_BACKEND = {"phi": "PhiForCausalLM", "gpt_neox": "GPTNeoXForCausalLM", "olmo": "OlmoForCausalLM",
                        "olmo2": "Olmo2ForCausalLM", "glm": "GlmForCausalLM"}

SOURCE = {
    "llama.py": ('head_dim = getattr(config, "head_dim", None)',
                 "self.head_dim = head_dim or self.hidden_size // self.total_num_heads",
                 "is_neox_style = True", "max_position=self.max_position_embeddings,",
                 'rope_parameters=getattr(config, "rope_parameters", None),'),
    "mistral.py": ("class MistralAttention(LlamaAttention):",),
    "phi3.py": ("class Phi3ForCausalLM(LlamaForCausalLM):",),
    "mixtral.py": ('self.head_dim = getattr(config, "head_dim", None)',
                   "self.head_dim = self.hidden_size // self.total_num_heads",
                   "rope_parameters=config.rope_parameters,", "is_neox_style=True,"),
    "qwen2.py": ("self.head_dim = hidden_size // self.total_num_heads", "rope_parameters=rope_parameters,",
                 "rope_parameters=config.rope_parameters,",
                 "dual_chunk_attention_config=dual_chunk_attention_config,"),
    "qwen2_moe.py": ("self.head_dim = hidden_size // self.total_num_heads", "rope_parameters=rope_parameters,",
                     "rope_parameters=config.rope_parameters,"),
    "qwen3.py": ("self.head_dim = head_dim or hidden_size // self.total_num_heads",
                 "rope_parameters=rope_parameters,", "rope_parameters=config.rope_parameters,"),
    "gemma.py": ("rope_parameters=rope_parameters,", "rope_parameters=config.rope_parameters,",
                 "is_neox_style=True,"),
    "gemma2.py": ("rope_parameters=config.rope_parameters,", "is_neox_style=True,"),
    "gemma3.py": ("rope_parameters = config.rope_parameters[layer_type]", "rope_parameters=rope_parameters,",
                  "is_neox_style=True,"),
    "stablelm.py": ("self.head_dim = self.hidden_size // self.total_num_heads",
                    "max_position=self.config.max_position_embeddings,",
                    "rope_parameters=self.config.rope_parameters,"),
    "falcon.py": ("self.head_dim = self.hidden_size // self.total_num_heads",
                  "rope_parameters=config.rope_parameters,"),
    "commandr.py": ("rope_parameters=config.rope_parameters,", "is_neox_style=False,"),
    "deepseek_v2.py": ('if config.rope_parameters["rope_type"] != "default":', '"deepseek_llama_scaling"',
                       'if config.rope_parameters.get("attention_factor") == 1.0', 'else "deepseek_yarn"',
                       "qk_rope_head_dim,", "is_neox_style=False,"),
}


def rope_args(config) -> dict:
    """get_rope's keyword arguments for this config, as its family's model file passes them."""
    file, head, neox = MODELS[config.model_type]
    rope_parameters = getattr(config, "rope_parameters", None)
    if config.model_type.startswith("gemma3"):
        rope_parameters = rope_parameters["full_attention"]  # the scaled layers (sliding ones stay default)
    if config.model_type.startswith("deepseek") and rope_parameters["rope_type"] != "default":
        rope_parameters = dict(rope_parameters, rope_type="deepseek_llama_scaling"
                               if rope_parameters.get("attention_factor") == 1.0 else "deepseek_yarn")
    return dict(head_size=head(config), max_position=config.max_position_embeddings,
                rope_parameters=rope_parameters, is_neox_style=neox)
