"""Reading a model's RoPE description from its config.json: the one place that knows the shapes.

Handles transformers v5 `rope_parameters`, legacy `rope_scaling` + top-level `rope_theta` (legacy
wins when both are present, as in transformers v5), `text_config`, per-layer-type nested
parameters (Gemma 3 style), and family quirks (GPT-NeoX `rotary_pct`/`rotary_emb_base`,
DeepSeek `qk_rope_head_dim`, partial rotary defaults). Pure Python: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ropeconv.errors import RopeconvError
from ropeconv.families import POSITION_EXPLAINED, Family, family_of, is_mla
from ropeconv.methods import Basis, compute, unscaled
from ropeconv.numbers import MAX_FACTOR, MAX_HEAD_DIM, finite_number, positive_int, show

SCALED_TYPES = ("linear", "dynamic", "yarn", "llama3", "longrope")
# Keys that describe the RoPE itself rather than its scaling.
NON_SCALING_KEYS = ("rope_type", "type", "rope_theta", "partial_rotary_factor", "mrope_section",
                    "mrope_interleaved")
FULL_ATTENTION = "full_attention"
RAN_FIELDS = ("rope_theta", "rope_scaling", "rope_parameters", "rotary_emb_base", "rotary_pct",
              "partial_rotary_factor", "rope_local_base_freq")


@dataclass
class RopeSpec:
    """A model's RoPE setup, normalised. Every number a method or writer needs is here."""

    model_type: str
    family: Family | None
    path: tuple[str, ...]  # where the language model's keys live in config.json: () or ("text_config",)
    theta: float
    head_dim: int
    partial_rotary_factor: float
    rotary_dim: int
    max_position_embeddings: int
    original_context: int  # L0
    original_context_source: str
    rope_type: str  # current type of the scaled entry: default, linear, dynamic, yarn, llama3, longrope
    scaling: dict  # the current scaling parameters (factor, betas, …), without rope_type/rope_theta
    shape: str  # "v5", "legacy", "both" or "none"
    nested: dict[str, dict] | None = None  # per-layer-type entries, as read (Gemma 3 style)
    scaled_layer_type: str | None = None  # the nested key that ropeconv scales (full attention)
    extra: dict = field(default_factory=dict)  # kept as-is: mrope_section, …
    warnings: list[str] = field(default_factory=list)
    defaulted: list[str] = field(default_factory=list)  # keys taken from the family's class defaults

    @property
    def is_scaled(self) -> bool:
        # an unknown rope_type counts as scaled: replacing it silently would drop a scaling we cannot read
        return self.rope_type != "default"

    @property
    def is_known(self) -> bool:
        return self.rope_type == "default" or self.rope_type in SCALED_TYPES

    @property
    def factor(self) -> float | None:
        f = self.scaling.get("factor")
        return float(f) if f is not None else None

    def basis(self, original_context: int | None = None) -> Basis:
        return Basis(self.theta, self.rotary_dim, original_context or self.original_context)

    def inv_freq(self, seq_len: int | None = None) -> tuple[list[float], float]:
        """The inverse frequencies and attention factor this config gives today."""
        if not self.is_scaled or not self.is_known:  # an unknown type is shown unscaled (is_scaled stays True)
            return unscaled(self.basis())
        params = dict(self.scaling)
        if params.get("factor") is None:  # transformers derives it from the two lengths
            params["factor"] = self.max_position_embeddings / self.original_context
        try:
            return compute(self.rope_type, self.basis(), params, seq_len)
        except RopeconvError:
            raise
        except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            # what config.json's scaling entry holds is not what its type needs (a missing or mistyped key)
            what = f"has no {exc.args[0]}" if isinstance(exc, KeyError) and exc.args else \
                f"holds a value its method cannot use ({type(exc).__name__})"
            raise RopeconvError(f"config.json's {self.rope_type} rope scaling {what}",
                                "complete the rope scaling entry in config.json (or remove it if the model "
                                "is not scaled)") from None

    def served_context(self) -> int:
        """The context this config is meant to give (what the current scaling extends to)."""
        if self.rope_type in ("linear", "dynamic") and self.factor:
            return max(int(round(self.original_context * self.factor)), self.max_position_embeddings)
        return self.max_position_embeddings

    def to_dict(self) -> dict:
        inv, attention = self.inv_freq()
        return {
            "model_type": self.model_type,
            "config_path": ".".join(self.path) or None,
            "rope_theta": self.theta,
            "head_dim": self.head_dim,
            "partial_rotary_factor": self.partial_rotary_factor,
            "rotary_dim": self.rotary_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "original_context": self.original_context,
            "original_context_source": self.original_context_source,
            "rope_type": self.rope_type,
            "scaling": self.scaling,
            "served_context": self.served_context(),
            "attention_factor": attention,
            "config_shape": self.shape,
            "nested_layer_types": sorted(self.nested) if self.nested else None,
            "scaled_layer_type": self.scaled_layer_type,
            "interleaved": bool(self.family and self.family.interleaved),
            "extra": self.extra,
            "defaulted": self.defaulted,
            "warnings": self.warnings,
        }


def language_section(config: dict) -> tuple[tuple[str, ...], dict]:
    """The part of config.json that holds the language model's RoPE keys."""
    text = config.get("text_config")
    if isinstance(text, dict) and (any(k in text for k in RAN_FIELDS) or "max_position_embeddings" in text):
        return ("text_config",), text
    return (), config


def _number(value: Any, key: str) -> float:
    if isinstance(value, str):  # numbers in config.json are JSON numbers, not text
        raise RopeconvError(f"config.json has {key} = {show(value)}, which is not a number",
                            "fix that value in config.json")
    return finite_number(value, f"config.json's {key}", "fix that value in config.json")


def _int(value: Any, key: str) -> int:
    if isinstance(value, str):
        raise RopeconvError(f"config.json has {key} = {show(value)}, which is not a number",
                            "fix that value in config.json")
    return positive_int(value, f"config.json's {key}", "fix that value in config.json")


def _name(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise RopeconvError(f"config.json has {key} = {show(value)}, which is not a name",
                            f"fix {key} in config.json (a string such as \"llama\")")
    return value


def refuse_non_rope(model_type: str, position: str) -> RopeconvError:
    return RopeconvError(f"{model_type or 'this model'} uses {POSITION_EXPLAINED[position]}",
                         "no RoPE conversion applies to it")


def read_spec(config: dict, original_context: int | None = None) -> RopeSpec:
    """Read the RoPE description of a parsed config.json.

    `original_context` overrides L0 (the --original-context option).
    Raises RopeconvError for models without RoPE and for configs that cannot be read.
    Phases: the entry and its shape → θ → rotary dim → L0.
    """
    if not isinstance(config, dict):
        raise RopeconvError("config.json is not a JSON object", "point ropeconv at a model's config.json folder")
    model_type, family, path, section, warnings = _identify(config)
    defaulted = [k for k, _ in (family.config_defaults if family else ()) if k not in section]
    if defaulted:
        section = {**dict(family.config_defaults), **section}
    head_dim = _head_dim(section, model_type)
    shape = _shape(section)
    entry, nested, scaled_layer_type = _scaled_entry(section, family, warnings)
    rope_type = _rope_type(entry, warnings)
    theta = _theta(entry, section, family, model_type, warnings)
    partial, rotary_dim = _rotary_dim(entry, section, family, head_dim)
    if "max_position_embeddings" not in section:
        raise RopeconvError("config.json has no max_position_embeddings",
                            "add the context the model was trained at as max_position_embeddings")
    max_pos = _int(section["max_position_embeddings"], "max_position_embeddings")
    L0, source = _original_context(section, entry, family, model_type, rope_type, max_pos, original_context,
                                   warnings)
    scaling = {k: v for k, v in entry.items() if k not in NON_SCALING_KEYS}
    extra = {k: entry[k] for k in ("mrope_section", "mrope_interleaved") if k in entry}
    if rope_type == "default":
        scaling = {k: v for k, v in scaling.items() if k != "original_max_position_embeddings"}

    return RopeSpec(model_type=model_type, family=family, path=path, theta=theta, head_dim=head_dim,
                    partial_rotary_factor=partial, rotary_dim=rotary_dim, max_position_embeddings=max_pos,
                    original_context=L0, original_context_source=source, rope_type=rope_type,
                    scaling=scaling, shape=shape, nested=nested, scaled_layer_type=scaled_layer_type,
                    extra=extra, warnings=warnings, defaulted=defaulted)


def _identify(config: dict) -> tuple[str, Family | None, tuple[str, ...], dict, list[str]]:
    """(model type, family, path to the language section, that section, warnings); refuses models
    without RoPE."""
    top_type = _name(config.get("model_type") or "", "model_type")
    path, section = language_section(config)
    model_type = _name(section.get("model_type") or top_type, "model_type")
    family = family_of(model_type) or family_of(top_type)
    warnings: list[str] = []
    if family and family.position != "rope":
        raise refuse_non_rope(model_type, family.position)
    if family and family.alibi_key and section.get(family.alibi_key):
        raise refuse_non_rope(f"{model_type} with {family.alibi_key}: true", "alibi")
    if family is None:
        if not any(k in section for k in RAN_FIELDS):
            raise RopeconvError(
                f"model type '{model_type or '?'}' is unknown to ropeconv and its config.json has no RoPE "
                f"fields ({', '.join(RAN_FIELDS[:3])}, …)",
                "it probably does not use RoPE; if it does, add rope_theta to config.json")
        warnings.append(f"model type '{model_type or '?'}' is unknown to ropeconv: read from its RoPE fields; "
                        "check the result with `ropeconv probe`")
    return model_type, family, path, section, warnings


def _shape(section: dict) -> str:
    """Which shapes the config uses: "v5" (rope_parameters), "legacy", "both" or "none"."""
    legacy, v5 = _present(section.get("rope_scaling")), _present(section.get("rope_parameters"))
    has_legacy = bool(legacy) or "rope_theta" in section  # top-level θ is the legacy shape too
    return "both" if has_legacy and v5 else "legacy" if has_legacy else "v5" if v5 else "none"


def _present(value: Any) -> dict | None:
    return value if isinstance(value, dict) and value else None


def _scaled_entry(section: dict, family: Family | None,
                  warnings: list[str]) -> tuple[dict, dict[str, dict] | None, str | None]:
    """The RoPE entry ropeconv reads and scales, the per-layer-type entries (Gemma 3 style) and the
    layer type scaled."""
    legacy, v5 = _present(section.get("rope_scaling")), _present(section.get("rope_parameters"))
    declared_layer_types = section.get("layer_types") or []
    if not isinstance(declared_layer_types, list) or not all(isinstance(t, str) for t in declared_layer_types):
        raise RopeconvError(f"config.json has layer_types = {show(declared_layer_types)}, not a list of names",
                            "fix layer_types in config.json (e.g. [\"sliding_attention\", \"full_attention\"])")
    layer_types = set(declared_layer_types) | {FULL_ATTENTION, "sliding_attention"}
    nested = None
    scaled_layer_type = None
    if v5 and any(k in layer_types for k in v5) and all(isinstance(v5[k], dict) or v5[k] is None
                                                        for k in v5 if k in layer_types):
        nested = {k: dict(v) for k, v in v5.items() if k in layer_types and isinstance(v, dict)}
        scaled_layer_type = FULL_ATTENTION if FULL_ATTENTION in nested else sorted(nested)[0]
        entry = dict(nested[scaled_layer_type])
        if legacy:  # Gemma 3 merges legacy rope_scaling into the full-attention entry
            entry.update(legacy)
    elif family and family.nested_layer_types and (legacy or v5 or "rope_theta" in section):
        # a legacy-shaped config of a per-layer-type family: read it the way its v5 class does
        entry = dict(legacy or v5 or {})
        local = section.get(family.local_theta_key, family.local_theta)
        nested = {family.nested_layer_types[0]: dict(entry),
                  family.nested_layer_types[1]: {"rope_type": "default", "rope_theta": local}}
        scaled_layer_type = family.nested_layer_types[0]
    elif legacy:
        entry = dict(legacy)
        if v5 and _differs(legacy, v5):
            warnings.append("config.json has both rope_scaling and rope_parameters with different values; "
                            "transformers v5 uses rope_scaling, so ropeconv does too")
    else:
        entry = dict(v5 or {})
    return entry, nested, scaled_layer_type


def _rope_type(entry: dict, warnings: list[str]) -> str:
    """The entry's rope type (its factor checked once here: methods divide by it)."""
    if "type" in entry and "rope_type" in entry and entry["type"] != entry["rope_type"]:
        warnings.append(f"rope scaling has type={entry['type']!r} and rope_type={entry['rope_type']!r}; "
                        "vLLM refuses the conflict, transformers v5 uses rope_type")
    elif "type" in entry and "rope_type" in entry:
        warnings.append("rope scaling has both type and rope_type; exllamav2 asserts on that")
    rope_type = _name(entry.get("rope_type", entry.get("type", "default")), "rope_type")
    if rope_type in ("mrope", "axial"):  # Qwen2-VL's legacy spelling of plain multimodal RoPE
        rope_type = "default"
    if entry.get("factor") is not None:
        factor = _number(entry["factor"], "rope scaling factor")
        if not 0 < factor <= MAX_FACTOR:
            raise RopeconvError(f"config.json has a rope scaling factor of {show(entry['factor'])}, outside "
                                f"(0, {MAX_FACTOR:g}]", "fix the factor in config.json (1 means no scaling)")
    return rope_type


def _theta(entry: dict, section: dict, family: Family | None, model_type: str, warnings: list[str]) -> float:
    theta_value = entry.get("rope_theta", section.get("rope_theta", section.get("rotary_emb_base")))
    if theta_value is None:
        theta_value = family.default_theta if family else 10000.0
        if family is not None and not family.fixed_theta:
            warnings.append(f"config.json has no rope_theta: {model_type} defaults to {theta_value:g}; "
                            "engines that read only top-level rope_theta fall back to 10000")
    theta = _number(theta_value, "rope_theta")
    if theta <= 1:
        raise RopeconvError(f"config.json has rope_theta = {theta_value!r}, which must be greater than 1",
                            "fix rope_theta in config.json")
    return theta


def _rotary_dim(entry: dict, section: dict, family: Family | None, head_dim: int) -> tuple[float, int]:
    """(partial rotary fraction, rotary dimensions)."""
    partial = entry.get("partial_rotary_factor", section.get("partial_rotary_factor", section.get("rotary_pct")))
    partial = _number(partial, "partial_rotary_factor") if partial is not None else (
        family.default_partial if family else 1.0)
    if not 0 < partial <= 1:
        raise RopeconvError(f"partial_rotary_factor = {partial} is outside (0, 1]", "fix it in config.json")
    rotary_dim = int(head_dim * partial)
    if rotary_dim > MAX_HEAD_DIM:
        raise RopeconvError(f"config.json gives a rotary dimension of {rotary_dim}, more than {MAX_HEAD_DIM}",
                            "fix head_dim / hidden_size / num_attention_heads in config.json")
    if rotary_dim < 4 or rotary_dim % 2:  # NTK's θ·s^(d/(d-2)) needs d > 2; no real model rotates fewer
        raise RopeconvError(f"rotary dimension {rotary_dim} (head_dim {head_dim} × {partial}) is odd or too small; "
                            "RoPE rotates pairs of dimensions",
                            "fix head_dim / partial_rotary_factor in config.json")
    return partial, rotary_dim


def _original_context(section: dict, entry: dict, family: Family | None, model_type: str, rope_type: str,
                      max_pos: int, original_context: int | None, warnings: list[str]) -> tuple[int, str]:
    """(L0, where it was read)."""
    top_original = section.get("original_max_position_embeddings")
    nested_original = entry.get("original_max_position_embeddings")
    if top_original is not None and nested_original is not None and top_original != nested_original:
        warnings.append(f"top-level original_max_position_embeddings ({top_original}) disagrees with the "
                        f"rope scaling's ({nested_original}); transformers v5 uses the top-level one")
    if original_context is not None:
        return _int(original_context, "--original-context"), "--original-context"
    if top_original is not None:
        return _int(top_original, "original_max_position_embeddings"), "original_max_position_embeddings"
    if nested_original is not None:
        return (_int(nested_original, "original_max_position_embeddings"),
                "rope scaling original_max_position_embeddings")
    if rope_type == "linear" and family and family.linear_max_is_scaled and entry.get("factor"):
        return (int(round(max_pos / _number(entry["factor"], "factor"))),
                f"max_position_embeddings ÷ factor ({model_type} publishes the scaled length there)")
    if rope_type in ("linear", "dynamic"):
        return max_pos, "max_position_embeddings (linear/dynamic keep L0 there)"
    if family and family.trained_context and family.trained_context < max_pos:
        warnings.append(f"{family.note}: L0 is taken as {max_pos}; pass --original-context "
                        f"{family.trained_context} to scale from the trained length")
    return max_pos, "max_position_embeddings"


def _head_dim(section: dict, model_type: str) -> int:
    if is_mla(model_type) and section.get("qk_rope_head_dim"):
        return _int(section["qk_rope_head_dim"], "qk_rope_head_dim")
    if section.get("head_dim"):
        return _int(section["head_dim"], "head_dim")
    hidden = section.get("hidden_size", section.get("d_model", section.get("n_embd")))
    heads = section.get("num_attention_heads", section.get("n_head", section.get("num_heads")))
    if not hidden or not heads:
        raise RopeconvError("config.json gives neither head_dim nor hidden_size and num_attention_heads",
                            "add head_dim to config.json")
    return _int(hidden, "hidden_size") // _int(heads, "num_attention_heads")


def _differs(legacy: dict, v5: dict) -> bool:
    def norm(d: dict) -> dict:
        d = {k: v for k, v in d.items() if k not in ("rope_theta", "partial_rotary_factor")}
        if "type" in d:
            d.setdefault("rope_type", d.pop("type"))
        return d

    return norm(legacy) != norm(v5)
