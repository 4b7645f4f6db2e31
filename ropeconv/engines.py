"""What each inference engine makes of a config.json: its rules as data, and their evaluation.

Every rule carries a note of where it comes from. `verified` means the rule was read in that
engine's own source (the place is named); the others are taken from ropeconv's reference notes
(themselves read from the engines' sources) and not re-read here.

`engine_table(config, spec)` answers, per engine: which context it will serve, and whether the
inverse frequencies and the attention factor come out as the config intends. "Intended" is what
transformers ≥ 5 computes from the config (that is `RopeSpec.inv_freq()`); for `dynamic` it is the
frequencies at the context the config advertises. Pure Python: no torch, no transformers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from ropeconv.families import family_of, is_mla, publishes_scaled_max
from ropeconv.methods import Basis, compute, unscaled
from ropeconv.spec import RopeSpec

# How an engine treats each scaling type.
HONOURED = "honoured"  # computed as transformers does
STATIC = "static"  # dynamic NTK computed once, at the engine's maximum length
DROPPED = "dropped"  # silently ignored: plain RoPE
REFUSED = "refused"  # the engine refuses to load the model
UNKNOWN = "unknown"  # type not recognised: an error at load time


@dataclass(frozen=True)
class Rule:
    value: Any
    source: str
    verified: bool = False

    def to_dict(self) -> dict:
        return {"value": self.value, "source": self.source, "verified": self.verified}


REF = "ropeconv reference notes (ROPE.md §4), not re-read"


@dataclass(frozen=True)
class Engine:
    key: str
    name: str
    # Where the RoPE description is read: "v5" (rope_scaling wins over rope_parameters, θ inside the
    # entry first), "legacy" (rope_scaling + top-level rope_theta only; rope_parameters unseen).
    keys: Rule
    # When a config.json has no top-level rope_theta: "family" (the model class default) or a number.
    theta_default: Rule
    # Which key names the type when both `type` and `rope_type` are present.
    type_key: Rule
    # What happens when both are present: "ok", "assert" (refuses always), "error_on_conflict".
    both_type_keys: Rule
    # scaling type -> HONOURED / STATIC / DROPPED / REFUSED
    types: Rule
    # Where L0 comes from, per type: "top_first", "nested_first", "top_only:<default>", "nested_only".
    original: Rule
    # YaRN factor: "given" or "max_over_original" (recomputed as max_position_embeddings / L0).
    yarn_factor: Rule
    # attention_factor / mscale: "honoured", "ignored" (default formula), "recomputed" (default formula).
    attention: Rule
    # Served context rule: "scaled" (transformers), "vllm", "sglang", "max_position_embeddings".
    served: Rule
    notes: tuple[str, ...] = ()

    def rules(self) -> dict:
        return {name: getattr(self, name).to_dict() for name in
                ("keys", "theta_default", "type_key", "both_type_keys", "types", "original", "yarn_factor",
                 "attention", "served")}


ALL_TYPES = ("default", "linear", "dynamic", "yarn", "llama3", "longrope")


def _types(**overrides: str) -> dict:
    table = {t: HONOURED for t in ALL_TYPES}
    table.update(overrides)
    return table


ENGINES: list[Engine] = [
    Engine(
        "transformers5", "transformers ≥ 5",
        keys=Rule("v5", "transformers 5.23 configuration RotaryEmbeddingConfigMixin.convert_rope_params_to_dict: "
                        "`self.rope_parameters = rope_scaling or self.rope_parameters` (legacy wins)", True),
        theta_default=Rule("family", "transformers 5.23 convert_rope_params_to_dict: rope_theta from the entry, then "
                                     "config.json, then the class default", True),
        type_key=Rule("rope_type", "transformers 5.23 standardize_rope_params: setdefault('rope_type', get('type'))",
                      True),
        both_type_keys=Rule("ok", "transformers 5.23 standardize_rope_params (rope_type kept, type ignored)", True),
        types=Rule(_types(ntk=UNKNOWN), "transformers 5.23 ROPE_INIT_FUNCTIONS (no 'ntk')", True),
        original=Rule({"default": "top_first"},
                      "transformers 5.23 standardize_rope_params: a top-level original_max_position_embeddings "
                      "overrides the nested one for llama3/yarn/longrope; missing -> max_position_embeddings", True),
        yarn_factor=Rule("given", "transformers 5.23 _compute_yarn_parameters: factor as given (only derived "
                                  "from the lengths when absent)", True),
        attention=Rule("honoured", "transformers 5.23 _compute_yarn_parameters / _compute_longrope_parameters", True),
        served=Rule("scaled", "transformers has no hard cap; the scaling covers L0 × factor", True),
        notes=("LongRoPE switches short/long factors per forward pass",),
    ),
    Engine(
        "transformers4", "transformers 4.4x–4.5x",
        keys=Rule("legacy", "transformers 4.x configuration classes read rope_scaling and top-level rope_theta "
                            "only (ROPE.md §3)"),
        theta_default=Rule("family", REF),
        type_key=Rule("type", "transformers 4.4x LlamaConfig: `if 'type' in rope_scaling: "
                              "rope_scaling['rope_type'] = rope_scaling['type']` (ROPE.md §3: v4 preferred type)"),
        both_type_keys=Rule("ok", REF),
        types=Rule(_types(ntk=UNKNOWN), "transformers 4.45+ ROPE_INIT_FUNCTIONS"),
        original=Rule({"default": "nested_first", "longrope": "top_first"},
                      "4.x: yarn/llama3 read original_max_position_embeddings from rope_scaling; Phi3's LongRoPE "
                      "reads the top-level key (ROPE.md §4)"),
        yarn_factor=Rule("max_over_original", "transformers 4.51–4.55 _compute_yarn_parameters: factor = "
                                              "max_position_embeddings / original_max_position_embeddings when the "
                                              "latter is in rope_scaling (ROPE.md §4)"),
        attention=Rule("honoured", REF),
        served=Rule("scaled", "no hard cap"),
        notes=("versions 4.51–4.55 recompute the YaRN factor from the two lengths",),
    ),
    Engine(
        "vllm", "vLLM",
        keys=Rule("v5", "vLLM reads the transformers config object (rope_parameters under transformers v5)", True),
        theta_default=Rule("family", "vLLM reads the transformers config object"),
        type_key=Rule("rope_type", "vLLM patch_rope_parameters ('No need to consider type key because of "
                                   "patch_rope_parameters', vllm/config/model.py)", True),
        both_type_keys=Rule("error_on_conflict", "vLLM patch_rope_parameters raises when type and rope_type differ "
                                                 "(ROPE.md §3)"),
        types=Rule(_types(dynamic=DROPPED, ntk=HONOURED), "vllm 0.33.0 DynamicNTKScalingRotaryEmbedding, run by "
                                                           "tests/test_conformance_vllm.py: with L0 in "
                                                           "max_position_embeddings the factor has no effect; 'ntk' "
                                                           "exists only in vLLM", True),
        original=Rule({"default": "top_first"}, "vLLM reads the transformers config object"),
        yarn_factor=Rule("given", REF),
        attention=Rule("honoured", "vllm 0.33.0 YaRNScalingRotaryEmbedding takes attention_factor, run by "
                                   "tests/test_conformance_vllm.py", True),
        served=Rule("vllm", "vllm 0.33.0 vllm/config/model.py _get_and_verify_max_len, run by "
                            "tests/test_conformance_vllm.py: max_position_embeddings × factor for every type but "
                            "longrope/llama3/su/yarn/deepseek_yarn (those keep max_position_embeddings as already "
                            "scaled); skipped for gemma3", True),
        notes=("LongRoPE factors are chosen per served max length",),
    ),
    Engine(
        "sglang", "SGLang",
        keys=Rule("v5", "SGLang reads the transformers config object"),
        theta_default=Rule("family", "SGLang reads the transformers config object"),
        type_key=Rule("rope_type", REF),
        both_type_keys=Rule("ok", REF),
        types=Rule(_types(dynamic=STATIC, ntk=UNKNOWN), "ROPE.md §4: dynamic is static in SGLang"),
        original=Rule({"default": "top_first"}, REF),
        yarn_factor=Rule("given", REF),
        attention=Rule("ignored", "sglang 0.5.23 reads attn_factor, not attention_factor, run by "
                                  "tests/test_conformance_sglang.py", True),
        served=Rule("sglang", "sglang hf_transformers_utils.get_context_length: max_position_embeddings × factor "
                              "unless rope_scaling has original_max_position_embeddings or is llama3", True),
        notes=("LongRoPE factors are chosen per batch",),
    ),
    Engine(
        "tgi", "TGI",
        keys=Rule("legacy", "TGI builds its config with transformers 4.x (ROPE.md §4)"),
        theta_default=Rule("family", REF),
        type_key=Rule("type", "TGI reads rope_scaling['type'] first (ROPE.md §3, v4 convention)"),
        both_type_keys=Rule("ok", REF),
        types=Rule(_types(ntk=UNKNOWN), "ROPE.md §4: TGI implements linear, dynamic, yarn, llama3, longrope"),
        original=Rule({"default": "nested_first", "longrope": "top_first"},
                      "ROPE.md §4: TGI reads the LongRoPE L0 at top level"),
        yarn_factor=Rule("given", REF),
        attention=Rule("ignored", "ROPE.md §4: TGI ignores attention_factor"),
        served=Rule("max_position_embeddings", "ROPE.md §4: TGI reads the served length from max_position_embeddings"),
        notes=("TGI's loader reads stored rotary buffers when present",),
    ),
    Engine(
        "llamacpp", "llama.cpp (after conversion)",
        keys=Rule("legacy", "convert_hf_to_gguf.py LlamaModel.generate_extra_tensors reads hparams['rope_scaling'] "
                            "and top-level rope_theta; newer converters also normalise rope_parameters "
                            "(rope_params), so a v5-only config converts there", True),
        theta_default=Rule(10000.0, "convert_hf_to_gguf.py: base = self.hparams.get('rope_theta', 10000.0)", True),
        type_key=Rule("type", "convert_hf_to_gguf.py reads rope_scaling 'type' or 'rope_type'"),
        both_type_keys=Rule("ok", REF),
        types=Rule(_types(dynamic=DROPPED, ntk=DROPPED),
                   "GGUF rope.scaling.type is none/linear/yarn/longrope; Llama 3 travels as a rope_freqs tensor; "
                   "dynamic is dropped (ROPE.md §4)"),
        original=Rule({"default": "nested_first", "llama3": "top_only:8192", "longrope": "top_first"},
                      "convert_hf_to_gguf.py: llama3 rope_freqs use old_context_len = self.hparams.get("
                      "'original_max_position_embeddings', 8192) at top level (verified); yarn writes "
                      "rope.scaling.original_context_length from rope_scaling (ROPE.md §4)", True),
        yarn_factor=Rule("given", REF),
        attention=Rule("recomputed", "ROPE.md §4: llama.cpp recomputes the YaRN attention factor (DeepSeek's "
                                     "mscale_all_dim travels as yarn_log_multiplier)"),
        served=Rule("max_position_embeddings", "GGUF context_length = max_position_embeddings; llama-server caps "
                                               "the context at it (ROPE.md §4)"),
        notes=("LongRoPE factors are chosen per context (n_ctx > original)",),
    ),
    Engine(
        "exllamav2", "exllamav2",
        keys=Rule("legacy", "exllamav2 config.py reads config.json directly: rope_theta, rope_scaling "
                            "(ROPE.md §3)"),
        theta_default=Rule(10000.0, "ROPE.md §3: exllamav2 falls back to θ = 10000"),
        type_key=Rule("rope_type", REF),
        both_type_keys=Rule("assert", "ROPE.md §3: exllamav2 asserts when both type and rope_type are present"),
        types=Rule(_types(dynamic=DROPPED, ntk=DROPPED), "ROPE.md §4: dynamic dropped by exllamav2"),
        original=Rule({"default": "nested_first"}, REF),
        yarn_factor=Rule("given", REF),
        attention=Rule("ignored", "ROPE.md §4: exllamav2 ignores attention_factor"),
        served=Rule("max_position_embeddings", REF),
    ),
    Engine(
        "exllamav3", "exllamav3",
        keys=Rule("legacy", "exllamav3 reads config.json directly (ROPE.md §4)"),
        theta_default=Rule(10000.0, REF),
        type_key=Rule("rope_type", REF),
        both_type_keys=Rule("ok", REF),
        types=Rule(_types(dynamic=REFUSED, ntk=UNKNOWN), "ROPE.md §4: exllamav3 refuses dynamic"),
        original=Rule({"default": "nested_first"}, REF),
        yarn_factor=Rule("max_over_original", "ROPE.md §4: exllamav3 recomputes factor = max / original"),
        attention=Rule("honoured", REF),
        served=Rule("max_position_embeddings", REF),
    ),
]

ENGINE_BY_KEY = {e.key: e for e in ENGINES}


# --------------------------------------------------------------------------------------------------
# Reading a config the way an engine does


@dataclass
class Reading:
    """What one engine computes from a config."""

    rope_type: str
    status: str  # HONOURED, STATIC, DROPPED, REFUSED, UNKNOWN
    theta: float
    original_context: int
    max_position_embeddings: int
    params: dict
    raw_factor: Any = None  # the factor as written in the entry the engine reads (None when absent)
    notes: list[str] = field(default_factory=list)


def section_of(config: dict, spec: RopeSpec) -> dict:
    section = config
    for key in spec.path:
        section = section.get(key) or {}
    return section


def _entry_v5(section: dict, spec: RopeSpec) -> dict:
    legacy = section.get("rope_scaling") if isinstance(section.get("rope_scaling"), dict) else None
    v5 = section.get("rope_parameters") if isinstance(section.get("rope_parameters"), dict) else None
    if spec.nested is not None:
        entry = dict(spec.nested.get(spec.scaled_layer_type) or {})
        if legacy:
            entry.update(legacy)
        return entry
    return dict(legacy or v5 or {})


def _type_of(entry: dict, prefer: str) -> str:
    other = "type" if prefer == "rope_type" else "rope_type"
    value = entry.get(prefer, entry.get(other, "default"))
    if value in ("mrope", "axial", None):
        return "default"
    if value == "su":  # the old name of longrope
        return "longrope"
    return str(value)


def read_as(engine: Engine, config: dict, spec: RopeSpec) -> Reading:
    if spec.model_type in TRANSFORMERS_BACKEND.get(engine.key, ()):
        # the engine has no model file of its own for the family: its Transformers backend runs transformers'
        # own rotary classes
        reading = read_as(ENGINE_BY_KEY["transformers5"], config, spec)
        return replace(reading, notes=[*reading.notes, f"served through {engine.name}'s Transformers backend "
                                                       "(transformers' rotary classes)"])
    section = section_of(config, spec)
    notes: list[str] = []
    if engine.keys.value == "v5":
        entry = _entry_v5(section, spec)
    else:
        legacy = section.get("rope_scaling")
        entry = dict(legacy) if isinstance(legacy, dict) else {}
        if not entry and isinstance(section.get("rope_parameters"), dict) and spec.is_scaled:
            notes.append("reads only rope_scaling: the scaling in rope_parameters is not seen")

    # θ
    if engine.keys.value == "v5":
        theta = entry.get("rope_theta", section.get("rope_theta", section.get("rotary_emb_base")))
    else:
        theta = section.get("rope_theta", section.get("rotary_emb_base"))
    if theta is None:
        if engine.theta_default.value == "family":
            theta = spec.family.default_theta if spec.family else 10000.0
        else:
            theta = float(engine.theta_default.value)
        if abs(float(theta) - spec.theta) > 1e-9 * spec.theta:
            notes.append(f"no top-level rope_theta: falls back to θ = {float(theta):g} (config means {spec.theta:g})")
    theta = float(theta)

    rope_type = _type_of(entry, engine.type_key.value)
    both = "type" in entry and "rope_type" in entry
    status = engine.types.value.get(rope_type, UNKNOWN)
    if both and engine.both_type_keys.value == "assert":
        status = REFUSED
        notes.append("both type and rope_type present: refuses to load")
    elif both and entry["type"] != entry["rope_type"] and engine.both_type_keys.value == "error_on_conflict":
        status = REFUSED
        notes.append(f"type {entry['type']!r} conflicts with rope_type {entry['rope_type']!r}: refuses to load")

    max_pos = int(section.get("max_position_embeddings", spec.max_position_embeddings))
    rule = engine.original.value.get(rope_type, engine.original.value["default"])
    top, nested = section.get("original_max_position_embeddings"), entry.get("original_max_position_embeddings")
    if rule.startswith("top_only:"):
        L0 = top if top is not None else int(rule.split(":")[1])
    elif rule == "top_first":
        L0 = top if top is not None else nested
    else:
        L0 = nested if nested is not None else top
    if L0 is None:
        L0 = max_pos if rope_type in ("yarn", "llama3", "longrope") else spec.original_context
    if rope_type in ("linear", "dynamic") and spec.original_context_source.startswith("max_position"):
        L0 = max_pos
    L0 = int(L0)

    params = {k: v for k, v in entry.items()
              if k not in ("rope_type", "type", "rope_theta", "partial_rotary_factor", "mrope_section",
                           "mrope_interleaved", "original_max_position_embeddings")}
    if rope_type in ("yarn", "longrope") and params.get("factor") is None:
        params["factor"] = max_pos / L0
    if (rope_type == "yarn" and engine.yarn_factor.value == "max_over_original"
            and (nested is not None or top is not None)):
        params["factor"] = max_pos / L0
    if engine.attention.value in ("ignored", "recomputed"):
        params.pop("attention_factor", None)
        if not is_mla(spec.model_type):  # DeepSeek's own YaRN code honours mscale everywhere
            params.pop("mscale", None)
            params.pop("mscale_all_dim", None)
    return Reading(rope_type=rope_type, status=status, theta=theta, original_context=L0,
                   max_position_embeddings=max_pos, params=params, raw_factor=entry.get("factor"), notes=notes)


def served_context(engine: Engine, reading: Reading, config: dict, spec: RopeSpec) -> int | None:
    if reading.status in (REFUSED, UNKNOWN):
        return None
    rule = engine.served.value
    max_pos = reading.max_position_embeddings
    factor = reading.params.get("factor") if rule == "scaled" else reading.raw_factor
    rope_type = reading.rope_type if reading.status != DROPPED else "default"
    if rule == "scaled":
        if rope_type in ("linear", "dynamic") and factor:
            if publishes_scaled_max(spec.model_type):
                return max_pos  # Gemma 3 ships its max_position_embeddings already scaled
            return int(round(reading.original_context * float(factor)))
        return max_pos
    if rule == "vllm":
        # _get_and_verify_max_len looks at the config's type even where the rotary code drops it (dynamic:
        # plain RoPE served at L0·s); yarn, llama3 and longrope keep max_position_embeddings as scaled
        configured = reading.rope_type
        # vLLM's own test: the top-level model_type containing "gemma3" (not a family rule of ropeconv's)
        if configured in ("linear", "dynamic") and "gemma3" not in (config.get("model_type") or ""):
            return int(max_pos * float(factor if factor is not None else 1.0))
        return max_pos
    if rule == "sglang":
        if rope_type == "default" or rope_type == "llama3":
            return max_pos
        entry = _entry_v5(section_of(config, spec), spec)
        if "original_max_position_embeddings" in entry:
            return max_pos
        return int(max_pos * float(factor if factor is not None else 1.0))
    return max_pos


def frequencies(reading: Reading, spec: RopeSpec, served: int | None) -> tuple[list[float], float] | None:
    """The inverse frequencies and attention factor the engine computes (None when it refuses)."""
    if reading.status in (REFUSED, UNKNOWN):
        return None
    basis = Basis(reading.theta, spec.rotary_dim, reading.original_context)
    rope_type = reading.rope_type
    if reading.status == DROPPED or rope_type == "default":
        return unscaled(basis)
    params = dict(reading.params)
    if rope_type == "ntk":
        params.setdefault("factor", 1.0)
    if params.get("factor") is None and rope_type not in ("longrope",):
        return unscaled(basis)
    try:
        if rope_type == "dynamic":
            length = reading.max_position_embeddings
            at = served or length
            if reading.status == STATIC:  # computed once at max_position_embeddings × factor
                at = int(length * float(params["factor"]))
            return compute("dynamic", Basis(reading.theta, spec.rotary_dim, length), {"factor": float(params["factor"])},
                           seq_len=at)
        if rope_type == "longrope":
            long_needed = served is not None and served > reading.original_context
            return compute("longrope", basis, params, seq_len=served if long_needed else None)
        params["factor"] = float(params["factor"])
        return compute(rope_type, basis, params)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def intended(spec: RopeSpec) -> tuple[list[float], float]:
    """What the config means: transformers ≥ 5's reading, at the context it advertises."""
    if spec.rope_type == "dynamic" and spec.factor:
        length = spec.max_position_embeddings
        return compute("dynamic", Basis(spec.theta, spec.rotary_dim, length), {"factor": spec.factor},
                       seq_len=spec.served_context())
    if spec.rope_type == "longrope":
        params = dict(spec.scaling)
        if params.get("factor") is None:
            params["factor"] = spec.max_position_embeddings / spec.original_context
        served = spec.served_context()
        return compute("longrope", spec.basis(), params,
                       seq_len=served if served > spec.original_context else None)
    return spec.inv_freq()


def same(a: list[float], b: list[float], rel: float = 1e-5) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=rel, abs_tol=0.0) for x, y in zip(a, b))


# The engines whose conformance suite (tests/test_conformance_*.py) runs every family the tool accepts; for
# the others, each family's row says whether the suite ran it (Family.suites_ran). Elsewhere a verdict comes
# from the rules above, read in the engine's source, and the table says so rather than vouching for it.
# vLLM's Transformers-backend families (phi, gpt_neox, olmo, olmo2, glm) have their served length run but not
# their RoPE (transformers' classes inside vLLM), so they stay "read, not run"; llama.cpp's converter fails on
# gpt_neox under transformers 5 (KeyError 'rotary_pct'), unscaled too.
SUITE_RUNS_EVERY_FAMILY = ("transformers5", "transformers4")
NOT_RUN = " (read, not run)"


def run_by_suite(engine_key: str, model_type: str) -> bool:
    family = family_of(model_type)
    return engine_key in SUITE_RUNS_EVERY_FAMILY or bool(family and engine_key in family.suites_ran)


def evaluate(engine: Engine, config: dict, spec: RopeSpec) -> dict:
    reading = read_as(engine, config, spec)
    served = served_context(engine, reading, config, spec)
    got = frequencies(reading, spec, served)
    notes = list(reading.notes)
    try:
        want_inv, want_att = intended(spec)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        want_inv, want_att = None, None
    if reading.status == REFUSED:
        inv_status = att_status = "refuses to load"
    elif reading.status == UNKNOWN:
        inv_status = att_status = f"unknown rope type '{reading.rope_type}'"
    elif got is None or want_inv is None:
        inv_status = att_status = "cannot compute"
    else:
        inv_status = "as intended" if same(got[0], want_inv) else "differs"
        if reading.status == STATIC and inv_status == "as intended":
            inv_status = "static: as intended only at the full length"
        att_status = "as intended" if math.isclose(got[1], want_att, rel_tol=1e-6) else (
            f"differs ({got[1]:.6g}, intended {want_att:.6g})")
    if reading.status == DROPPED and spec.is_scaled:
        notes.append(f"{reading.rope_type} is dropped: plain RoPE")
    if reading.status == STATIC:
        notes.append("dynamic computed once at max_position_embeddings × factor")
    if engine.notes and spec.rope_type == "longrope":
        notes.extend(n for n in engine.notes if "LongRoPE" in n)
    for rule in rules_for(spec.model_type, method_of(spec), engine.key):
        notes.append(f"{rule.versions}: {rule.computes}")
        if rule.outcome == "fails":
            inv_status = att_status = f"refuses to load in {rule.versions}"
        elif rule.outcome == "differs" and inv_status.startswith("as intended"):
            inv_status = f"differs in {rule.versions}"
    run = run_by_suite(engine.key, spec.model_type)
    if not run:
        inv_status, att_status = (status + NOT_RUN if status.startswith("as intended") else status
                                  for status in (inv_status, att_status))
    return {"engine": engine.key, "name": engine.name, "context": served, "rope_type": reading.rope_type,
            "inv_freq": inv_status, "attention_factor": att_status, "run_by_suite": run, "notes": notes}


def engine_table(config: dict, spec: RopeSpec) -> list[dict]:
    """One row per engine (see the module docstring)."""
    return [evaluate(engine, config, spec) for engine in ENGINES]


def rules_table() -> list[dict]:
    """Every engine's rules with their sources (for `check --json` and the docs)."""
    return [{"engine": e.key, "name": e.name, "rules": e.rules()} for e in ENGINES]


# --------------------------------------------------------------------------------------------------
# Verified rules: where an engine release reads ropeconv's output differently from what the method
# means. Each was found by running that engine's own code on ropeconv's outputs (the conformance suite
# in tests/test_conformance_*.py, which fails when a rule here disagrees with the engine), or is marked
# as taken from another run when this suite cannot run that engine.

GENERIC_ROPE = ("llama", "qwen2", "qwen2_moe", "phi", "gpt_neox", "stablelm", "falcon", "cohere", "olmo",
                "granite", "starcoder2", "exaone", "internlm2")  # families on transformers' shared rope code
# Families whose transformers ≤ 4.47 rotary class takes only θ (the scaling is ignored).
THETA_ONLY_447 = ("mistral", "mixtral", "gemma", "gemma2", "glm", "qwen2_vl")
# Families transformers added in 4.51 or later (before that: remote code, not transformers' own).
AFTER_450 = ("deepseek_v2", "deepseek_v3", "qwen3", "qwen3_moe", "glm4", "olmo3")
SUITE_T4 = "tests/test_conformance_transformers4.py"
SUITE_LLAMACPP = "tests/test_conformance_llamacpp.py"
SUITE_VLLM = "tests/test_conformance_vllm.py"
# Families an engine serves through its Transformers backend (transformers' own rotary classes): vLLM 0.33.0's
# registry maps them there, SGLang 0.5.23 has no model file for them (tests/engines/{vllm,sglang}_models.py)
VLLM_TRANSFORMERS_BACKEND = ("phi", "gpt_neox", "olmo", "olmo2", "glm")
SGLANG_TRANSFORMERS_BACKEND = ("gpt_neox", "falcon", "glm")
TRANSFORMERS_BACKEND = {"vllm": VLLM_TRANSFORMERS_BACKEND, "sglang": SGLANG_TRANSFORMERS_BACKEND}
SUITE_SGLANG = "tests/test_conformance_sglang.py"
# Families whose SGLang 0.5.23 model file passes get_rope only θ (mixtral.py, phi.py, gemma.py, gemma2.py,
# stablelm.py, olmo.py)
SGLANG_NO_SCALING = ("mixtral", "phi", "gemma", "gemma2", "stablelm", "olmo")
CONVERTER = "the converter of llama-cpp-python 0.3.36"
# Families whose llama.cpp converter class writes no RoPE keys of the config (its own set_gguf_parameters)
NO_ROPE_KEYS = ("phi", "gemma", "gemma2", "gpt_neox", "stablelm", "falcon", "glm")
# Families the converter runs for which llama.cpp's architecture loads no rope_freqs tensor
NO_ROPE_FREQS = ("qwen2", "qwen2_moe", "qwen3", "phi", "gemma", "gemma2", "gemma3_text", "gpt_neox", "stablelm",
                 "falcon", "olmo", "olmo2", "cohere", "glm")


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True)
class EngineRule:
    """One engine release range that computes something other than the method means."""

    engine: str  # engine key (ENGINE_BY_KEY)
    first: str | None  # first release affected (None: every earlier one)
    last: str | None  # last release affected (None: still current)
    methods: tuple[str, ...]
    families: tuple[str, ...] | None  # None: every family
    outcome: str  # "differs" (runs, other numbers), "fails" (refuses to load), "context" (serves less)
    computes: str  # what it does instead
    verified: str  # what the rule was verified against
    fix: str = ""  # what to do about it (or where the launch line helps)
    excluded: tuple[str, ...] = ()  # families the rule does not apply to
    as_of: str = ""  # for rules without a version range: the release they were seen in

    @property
    def versions(self) -> str:
        name = ENGINE_BY_KEY[self.engine].name.split(" ")[0] if self.engine in ENGINE_BY_KEY else self.engine
        if self.first and self.last:
            span = self.first if self.first == self.last else f"{self.first}–{self.last}"
        elif self.last:
            span = f"≤ {self.last}"
        elif self.first:
            span = f"≥ {self.first}"
        else:
            return f"{name} (as of {self.as_of})" if self.as_of else name
        return f"{name} {span}"

    def covers(self, version: str | None, model_type: str, method: str) -> bool:
        if method not in self.methods or (self.families is not None and model_type not in self.families) \
                or model_type in self.excluded:
            return False
        if version is None:
            return True
        v = version_tuple(version)
        if self.first and v < version_tuple(self.first):
            return False
        if self.last and v[:len(version_tuple(self.last))] > version_tuple(self.last):
            return False
        return True

    def to_dict(self) -> dict:
        return {"engine": self.engine, "versions": self.versions, "first": self.first, "last": self.last,
                "methods": list(self.methods), "families": list(self.families) if self.families else None,
                "outcome": self.outcome, "computes": self.computes, "verified": self.verified, "fix": self.fix}


RULES: list[EngineRule] = [
    EngineRule("transformers4", "4.45", "4.50", ("yarn",), None, "differs",
               "takes max_position_embeddings (L0·s) as the original length: the YaRN ramp sits at the wrong "
               "dimensions, so inv_freq is off at every length (up to ×2 in the suite)",
               f"transformers 4.46.3 and 4.50.3 differ, 4.55.4 and 4.57.6 agree ({SUITE_T4}); 4.45 and 4.51 "
               "run once on CPU, not re-run by this suite",
               "serve with transformers ≥ 4.51; no single config satisfies 4.45–4.50 and 4.51–4.55 for YaRN",
               excluded=AFTER_450),
    EngineRule("transformers4", None, "4.47", ("linear", "dynamic", "yarn", "llama3", "longrope"),
               THETA_ONLY_447, "differs",
               "its rotary class reads only rope_theta: the scaling is ignored (plain RoPE)",
               f"transformers 4.46.3 differs, 4.50.3 agrees ({SUITE_T4}); 4.47 and 4.48 (the "
               "bound) not run by this suite",
               "serve with transformers ≥ 4.48"),
    EngineRule("transformers4", None, "4.47", ("longrope",), GENERIC_ROPE, "differs",
               "uses the long factors at every length (short_factor is never used below L0)",
               f"transformers 4.46.3 ({SUITE_T4}); 4.48–4.49 not run",
               "serve with transformers ≥ 4.51"),
    EngineRule("transformers4", "4.48", "4.50", ("longrope",), None, "differs",
               "past L0 its frequencies differ from the long factors' (up to ×2.6 at L0·s in the suite)",
               f"transformers 4.50.3 differs, 4.55.4 and 4.57.6 agree ({SUITE_T4}); 4.48–4.49 not run",
               "serve with transformers ≥ 4.51", excluded=AFTER_450 + ("phi3", "phimoe")),
    EngineRule("transformers4", None, "4.57", ("yarn", "llama3", "longrope"), ("olmo", "olmo2"), "fails",
               "its config class accepts only linear or dynamic rope_scaling ({type, factor}) and raises on "
               "the rest", f"transformers 4.46.3, 4.50.3, 4.55.4 and 4.57.6 ({SUITE_T4})",
               "serve with transformers ≥ 5, or use linear, dynamic or ntk"),
    EngineRule("llamacpp", None, None, ("linear",), None, "context",
               "convert_hf_to_gguf.py writes context_length = max_position_embeddings = L0 (ropeconv keeps L0 "
               "there for vLLM and SGLang, which multiply it by the factor): llama-server serves L0 unless told",
               f"llama.cpp's converter from llama-cpp-python 0.3.36 ({SUITE_LLAMACPP})",
               "pass -c L0·s to llama.cpp (the launch line), or extend the GGUF with ropeconv", as_of=CONVERTER,
               # Gemma 3 keeps L0·s in max_position_embeddings for linear; the rest drop linear altogether
               excluded=("gemma3", "gemma3_text") + NO_ROPE_KEYS + ("cohere",)),
    EngineRule("llamacpp", None, None, ("dynamic",), None, "differs",
               "convert_hf_to_gguf.py drops dynamic scaling: plain RoPE with context_length L0",
               f"llama.cpp's converter from llama-cpp-python 0.3.36 ({SUITE_LLAMACPP})",
               "use yarn or ntk for llama.cpp", as_of=CONVERTER),
    EngineRule("llamacpp", None, None, ("linear", "ntk", "yarn"), NO_ROPE_KEYS, "differs",
               "convert_hf_to_gguf.py writes neither rope.scaling.* nor the config's rope_theta for these families "
               "(θ: llama.cpp's default 10000, GLM 10000·rope_ratio; Falcon's context_length is always 2048, GLM's "
               "seq_length or hidden_size): llama.cpp runs plain RoPE",
               f"llama.cpp's converter from llama-cpp-python 0.3.36 ({SUITE_LLAMACPP}, tiny models)",
               "convert the unscaled model, then `ropeconv extend model.gguf` on the GGUF", as_of=CONVERTER),
    EngineRule("llamacpp", None, None, ("linear", "yarn"), ("cohere",), "differs",
               "convert_hf_to_gguf.py writes rope.scaling.type none for Command-R and drops the factor: llama.cpp "
               "runs plain RoPE (θ is written, so ntk converts)",
               f"llama.cpp's converter from llama-cpp-python 0.3.36 ({SUITE_LLAMACPP}, tiny model)",
               "convert the unscaled model, then `ropeconv extend model.gguf` on the GGUF", as_of=CONVERTER),
    EngineRule("llamacpp", None, None, ("llama3",), NO_ROPE_FREQS, "differs",
               "convert_hf_to_gguf.py writes no rope_freqs tensor for these families (llama.cpp loads none for "
               "their architectures; ropeconv refuses llama3 on such a GGUF): plain RoPE",
               f"llama.cpp's converter from llama-cpp-python 0.3.36 ({SUITE_LLAMACPP}, tiny models)",
               "use yarn for llama.cpp", as_of=CONVERTER),
    EngineRule("llamacpp", None, None, ("longrope",), None, "differs",
               "convert_hf_to_gguf.py writes no rope_factors tensors (rope.scaling.type longrope alone, or for "
               "some families nothing) and no attn_factor, except for Phi-3: llama.cpp runs plain RoPE",
               f"llama.cpp's converter from llama-cpp-python 0.3.36 ({SUITE_LLAMACPP})",
               "convert the unscaled model, then `ropeconv extend model.gguf --method longrope …` on the GGUF",
               excluded=("phi3", "phimoe"), as_of=CONVERTER),
    EngineRule("vllm", None, None, ("longrope",), None, "context",
               "serves L0 (max_model_len = original_max_position_embeddings) unless --max-model-len asks for more",
               f"vllm 0.33.0 vllm/config/model.py _get_and_verify_max_len, run ({SUITE_VLLM}, every family)",
               "pass --max-model-len L0·s (the launch line)", as_of="vllm 0.33.0"),
    EngineRule("vllm", None, None, ("longrope",), None, "differs",
               "once max_model_len exceeds L0 it uses the long factors at every length (short_factor is "
               "never used), to keep its KV cache valid", f"vllm 0.33.0's rotary_embedding package on CPU "
               f"({SUITE_VLLM}, every family vLLM models itself)",
               "accept it, or serve with --max-model-len ≤ L0 where only short inputs matter",
               excluded=VLLM_TRANSFORMERS_BACKEND, as_of="vllm 0.33.0"),
    EngineRule("vllm", None, None, ("yarn",), ("qwen2_vl", "qwen2_5_vl"), "differs",
               "MRotaryEmbedding builds its cache over max_position × mrope_positions_factor (4·L0) and YaRN reads "
               "that as the original length: the ramp sits at the wrong dimensions (inv_freq up to ×2 off at "
               "every length; the attention factor is right)", f"vllm 0.33.0's rotary_embedding package on CPU "
               f"({SUITE_VLLM})", "use ntk for Qwen2-VL/Qwen2.5-VL on vLLM", as_of="vllm 0.33.0"),
    EngineRule("vllm", None, None, ("longrope",), ("cohere",), "fails",
               "commandr.py passes is_neox_style=False and get_rope raises \"Phi3LongRoPEScaledRotaryEmbedding only "
               "supports neox_style\"", f"vllm 0.33.0's rotary_embedding package on CPU ({SUITE_VLLM})",
               "use yarn for Cohere on vLLM", as_of="vllm 0.33.0"),
    EngineRule("vllm", None, None, ("dynamic",), None, "differs",
               "the factor has no effect: DynamicNTKScalingRotaryEmbedding computes θ·((s·max/max_trained) − "
               "(s − 1)) with max_trained defaulting to max_position_embeddings (= L0), i.e. θ; and its cos/sin "
               "cache holds only L0 positions", f"vllm 0.33.0's rotary_embedding package on CPU ({SUITE_VLLM}, "
               "every family vLLM models itself)", "use yarn or ntk for vLLM", as_of="vllm 0.33.0",
               excluded=VLLM_TRANSFORMERS_BACKEND),
    EngineRule("sglang", None, None, ("dynamic",), None, "differs",
               "computes dynamic NTK once, at the full length (static): frequencies below L0 differ",
               f"sglang 0.5.23's rotary_embedding package on CPU ({SUITE_SGLANG})",
               "use yarn for a scaling that is the same everywhere", as_of="sglang 0.5.23",
               excluded=SGLANG_NO_SCALING + SGLANG_TRANSFORMERS_BACKEND),
    EngineRule("sglang", None, None, ("linear", "dynamic", "yarn", "llama3", "longrope"), SGLANG_NO_SCALING, "differs",
               "the family's model file passes only θ to get_rope (no rope_scaling): plain RoPE, while "
               "get_context_length still serves L0·s", f"sglang 0.5.23's rotary_embedding package on CPU with the "
               f"model files' get_rope arguments ({SUITE_SGLANG})", "use ntk (a larger θ) for this family on SGLang",
               as_of="sglang 0.5.23"),
    EngineRule("sglang", None, None, ("longrope",), ("cohere",), "fails",
               "commandr.py passes is_neox_style=False and get_rope raises \"Phi3LongRoPEScaledRotaryEmbedding only "
               "supports neox_style\"", f"sglang 0.5.23's rotary_embedding package on CPU ({SUITE_SGLANG})",
               "use yarn for Cohere on SGLang", as_of="sglang 0.5.23"),
]


def rules_for(model_type: str, method: str, engine: str | None = None,
              version: str | None = None) -> list[EngineRule]:
    """The verified rules that apply to `method` on `model_type` (optionally one engine / release)."""
    return [r for r in RULES if (engine is None or r.engine == engine) and r.covers(version, model_type, method)]


def method_of(spec: RopeSpec) -> str:
    """The method a config carries (an NTK output is plain RoPE with a larger θ: nothing to compare)."""
    return spec.rope_type if spec.rope_type in ("linear", "dynamic", "yarn", "llama3", "longrope") else "default"


def verified_rules_table() -> list[dict]:
    return [r.to_dict() for r in RULES]


def rules_markdown() -> str:
    """RULES as the README's table (scripts/engine_rules_table.py writes it; a test holds the README to it)."""
    def families(rule: EngineRule) -> str:
        named = ", ".join(rule.families) if rule.families else "every family"
        return named + (f" but {', '.join(rule.excluded)}" if rule.excluded else "")

    lines = ["| engine, releases | methods | families | what it computes instead | verified against | what to do |",
             "|---|---|---|---|---|---|"]
    for rule in RULES:
        cells = (rule.versions, ", ".join(rule.methods), families(rule), rule.computes, rule.verified, rule.fix)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)

