"""The conformance case matrix: every family ropeconv names × every method, written by the real API.

Each source is a config-only folder of a tiny model of that family, saved by the system transformers
(v5) — as a checkpoint saved today looks — plus published-shape variants (legacy `rope_scaling` +
top-level `rope_theta`, no `head_dim` key: Mistral 7B v0.1 as published). `api.extend` writes each
output exactly as `ropeconv extend` does; a combination ropeconv refuses is recorded with its reason.

The method's meaning at a position p (sequence length p + 1) is `ropeconv.methods.compute` on the
unscaled basis: what the engines must reproduce.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ropeconv import api
from ropeconv.errors import RopeconvError
from ropeconv.methods import CONVERTIBLE, Basis, compute
from ropeconv.spec import read_spec

FACTOR = 4.0
SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=128, max_position_embeddings=4096)

# family -> (model_type, extra kwargs, architectures, legacy) ; architectures names the class engines build
SOURCES: dict[str, tuple[str, dict, str | None, bool]] = {
    "llama": ("llama", {}, "LlamaForCausalLM", False),
    "mistral": ("mistral", {}, "MistralForCausalLM", False),
    # Mistral 7B v0.1 as published: legacy shape, no head_dim key (the class default fills it)
    "mistral-published": ("mistral", {}, "MistralForCausalLM", True),
    "mixtral": ("mixtral", {"num_local_experts": 2, "num_experts_per_tok": 1}, "MixtralForCausalLM", True),
    "qwen2": ("qwen2", {}, "Qwen2ForCausalLM", False),
    "qwen2_moe": ("qwen2_moe", {"num_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 32,
                                "shared_expert_intermediate_size": 32}, "Qwen2MoeForCausalLM", False),
    "qwen3": ("qwen3", {"head_dim": 16, "max_position_embeddings": 40960}, "Qwen3ForCausalLM", False),
    # M-RoPE: built from the published Qwen2.5-VL config (flat, legacy-shaped), shrunk (see PUBLISHED)
    "qwen2_vl": ("qwen2_vl", {}, "Qwen2VLForConditionalGeneration", True),
    "qwen2_5_vl": ("qwen2_5_vl", {}, "Qwen2_5_VLForConditionalGeneration", True),
    "phi3": ("phi3", {"pad_token_id": 0}, "Phi3ForCausalLM", False),
    "phi": ("phi", {"partial_rotary_factor": 0.5}, "PhiForCausalLM", False),
    "gemma": ("gemma", {"head_dim": 16}, "GemmaForCausalLM", False),
    "gemma2": ("gemma2", {"head_dim": 16}, "Gemma2ForCausalLM", False),
    "gemma3_text": ("gemma3_text", {"head_dim": 16, "sliding_window": 64,
                                    "layer_types": ["sliding_attention", "full_attention"], "num_hidden_layers": 2},
                    "Gemma3ForCausalLM", False),
    "gpt_neox": ("gpt_neox", {"rotary_pct": 0.25}, "GPTNeoXForCausalLM", False),
    # partial rotary 0.5 of head 16: 4 pairs, enough for llama3 to scale one (0.25 leaves 2, both unscaled)
    "stablelm": ("stablelm", {"partial_rotary_factor": 0.5}, "StableLmForCausalLM", False),
    "falcon": ("falcon", {"num_kv_heads": 2, "new_decoder_architecture": True, "alibi": False},
               "FalconForCausalLM", False),
    "olmo": ("olmo", {}, "OlmoForCausalLM", False),
    "olmo2": ("olmo2", {}, "Olmo2ForCausalLM", False),
    "cohere": ("cohere", {}, "CohereForCausalLM", False),
    "glm": ("glm", {"head_dim": 16, "pad_token_id": 0, "eos_token_id": 1}, "GlmForCausalLM", False),
    "deepseek_v3": ("deepseek_v3", {"kv_lora_rank": 16, "q_lora_rank": 32, "qk_rope_head_dim": 8,
                                    "qk_nope_head_dim": 8, "v_head_dim": 8, "n_routed_experts": 2,
                                    "num_experts_per_tok": 1, "moe_intermediate_size": 32, "n_shared_experts": 1,
                                    "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1},
                    "DeepseekV3ForCausalLM", False),
}
ORIGINAL = {"qwen3": 32768}  # Qwen3 advertises 40960, trained at 32768 (as Qwen documents YaRN)


@dataclass
class Case:
    id: str
    family: str
    method: str
    folder: Path | None  # the extended output (None when refused)
    refused: str | None = None  # ropeconv's one-line reason
    L0: int = 0
    served: int = 0
    positions: list[int] = field(default_factory=list)
    expected: dict[int, tuple[list[float], float]] = field(default_factory=dict)


FIXTURES = Path(__file__).parent.parent / "fixtures" / "configs"
# Multimodal configs are taken from the published shape (tests/fixtures/configs), shrunk: the v5 save of
# a Qwen2-VL config nests text_config, which transformers 4.x cannot load at all (not a RoPE matter).
PUBLISHED = {
    "qwen2_vl": ("nexus-genv2-qwen2.5-vl.json", {
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "vision_config": {"depth": 1, "embed_dim": 32, "num_heads": 2, "hidden_size": 64, "mlp_ratio": 2,
                          "model_type": "qwen2_vl"}}),
    "qwen2_5_vl": ("nexus-genv2-qwen2.5-vl.json", {
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "vision_config": {"depth": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64,
                          "out_hidden_size": 64, "fullatt_block_indexes": [0], "model_type": "qwen2_5_vl"}}),
}


def _published(family: str, folder: Path) -> None:
    model_type, _, arch, _ = SOURCES[family]
    name, overrides = PUBLISHED[family]
    data = json.loads((FIXTURES / name).read_text())
    data.pop("auto_map", None)  # remote code: engines are run on their own classes
    data.update({k: v for k, v in SMALL.items() if k != "max_position_embeddings"}, model_type=model_type,
                architectures=[arch], **overrides)
    data.update(max_position_embeddings=4096, pad_token_id=0, bos_token_id=0, eos_token_id=1)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(data, indent=2))


def build_source(family: str, root: Path) -> Path:
    from transformers import AutoConfig

    model_type, kwargs, arch, legacy = SOURCES[family]
    folder = root / "sources" / family
    if (folder / "config.json").exists():
        return folder
    if family in PUBLISHED:
        _published(family, folder)
        return folder
    config = AutoConfig.for_model(model_type, **{**SMALL, **kwargs})
    config.architectures = [arch] if arch else None
    config.save_pretrained(folder)
    path = folder / "config.json"
    data = json.loads(path.read_text())
    if family.startswith("mistral-published") or family == "mixtral":
        data.pop("head_dim", None)  # as Mistral/Mixtral publish it: no key at all
    if legacy:
        section = data.get("text_config") if "text_config" in data and "rope_parameters" in data["text_config"] else data
        params = section.pop("rope_parameters", None) or {}
        section["rope_theta"] = params.get("rope_theta", 10000.0)
        scaling = {k: v for k, v in params.items() if k not in ("rope_theta", "partial_rotary_factor")}
        section["rope_scaling"] = scaling if scaling.get("rope_type", "default") != "default" or \
            "mrope_section" in scaling else None
        if section is not data:
            data.pop("rope_parameters", None)
            data["rope_theta"] = section["rope_theta"]
            data["rope_scaling"] = section["rope_scaling"]
    path.write_text(json.dumps(data, indent=2))
    return folder


def method_params(method: str, rotary_dim: int, model_type: str) -> dict:
    half = rotary_dim // 2
    if method == "longrope":
        return {"short_factor": [1.0 + 0.01 * j for j in range(half)],
                "long_factor": [1.0 + 0.25 * j for j in range(half)]}
    if method == "yarn":
        return {"mscale": 0.707, "mscale_all_dim": 0.707} if model_type.startswith("deepseek") else {"beta_fast": 24.0}
    if method == "llama3":
        return {"low_freq_factor": 1.0, "high_freq_factor": 4.0}
    return {}


def build_case(family: str, method: str, root: Path) -> Case:
    src = build_source(family, root)
    config = json.loads((src / "config.json").read_text())
    original = ORIGINAL.get(family)
    spec = read_spec(config, original_context=original)
    params = method_params(method, spec.rotary_dim, spec.model_type)
    case_id = f"{family}-{method}"
    out = root / "outputs" / case_id
    try:
        api.extend(str(src), method, factor=FACTOR, params=params or None, output=out, force=True,
                   original_context=original)
    except RopeconvError as exc:
        return Case(case_id, family, method, None, refused=f"{exc.problem} — {exc.fix}")
    L0 = spec.original_context
    served = int(L0 * FACTOR)
    positions = [L0 // 2 - 1, served - 1]  # sequence lengths L0/2 (inside L0) and L0·s (the full context)
    basis = Basis(spec.theta, spec.rotary_dim, L0)
    expected = {p: compute(method, basis, {"factor": FACTOR, **params}, seq_len=p + 1) for p in positions}
    return Case(case_id, family, method, out, L0=L0, served=served, positions=positions, expected=expected)


def build_matrix(root: Path, families=None, methods=None) -> list[Case]:
    return [build_case(f, m, root) for f in (families or SOURCES) for m in (methods or CONVERTIBLE)]
