"""The findings `ropeconv check` reports, and the checks that produce them.

`Finding` is one reported problem (severity, key, what goes wrong, the fix and, when the fix is a plain
edit, the `patch` operations); `Context` is everything a check may look at. Each check is a function
registered in `CHECKS` with `@check(id, summary)`; it reads the raw config.json (plus
tokenizer_config.json and stored rotary buffers where they matter) and the normalised `RopeSpec`.
Pure Python at import time: no torch, no transformers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ropeconv import engines as eng
from ropeconv import families as fam
from ropeconv.methods import METHODS, ParamError, longrope_attention_factor, unscaled, validate_params, yarn_attention_factor
from ropeconv.spec import FULL_ATTENTION, RopeSpec

SEVERITIES = ("error", "warning", "info")
CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
# Float parameters that transformers documents as floats (4.x warns on integers; 5.x on attention_factor).
FLOAT_PARAMS = ("factor", "attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim",
                "low_freq_factor", "high_freq_factor")
# model_max_length values tokenizers use to mean "no limit".
NO_LIMIT = 1e15


@dataclass
class Finding:
    check: str  # the check's id
    severity: str  # error, warning or info
    key: str  # the config key involved (dotted path)
    problem: str  # what goes wrong, and where
    fix: str  # what to do
    engines: list[str] = field(default_factory=list)  # engines affected
    patch: list[tuple] = field(default_factory=list)  # ("set", file, path, value) / ("del", file, path) / ("buffers",)

    @property
    def fixable(self) -> bool:
        return bool(self.patch)

    def to_dict(self) -> dict:
        return {"check": self.check, "severity": self.severity, "key": self.key, "problem": self.problem,
                "engines": self.engines, "fix": self.fix, "auto_fix": self.fixable}


@dataclass
class Context:
    """Everything a check may look at."""

    config: dict
    spec: RopeSpec
    section: dict  # the language model's part of config.json
    prefix: tuple  # its path inside config.json
    folder: Path | None = None
    tokenizer: dict | None = None
    buffers: list | None = None  # ropeconv.buffers.Buffer entries found in safetensors headers
    table: list[dict] = field(default_factory=list)  # the engine table

    def entries(self) -> list[tuple[tuple, dict]]:
        """Every RoPE entry in the section, with its path: rope_scaling, rope_parameters, nested ones."""
        out = []
        if isinstance(self.section.get("rope_scaling"), dict):
            out.append((("rope_scaling",), self.section["rope_scaling"]))
        params = self.section.get("rope_parameters")
        if isinstance(params, dict):
            if self.spec.nested is not None:
                for layer_type, entry in params.items():
                    if isinstance(entry, dict):
                        out.append((("rope_parameters", layer_type), entry))
            else:
                out.append((("rope_parameters",), params))
        return out

    def scaling_entry(self) -> tuple[tuple, dict]:
        """The entry transformers v5 uses for the scaled layers (legacy rope_scaling wins)."""
        if isinstance(self.section.get("rope_scaling"), dict) and self.section["rope_scaling"]:
            return ("rope_scaling",), self.section["rope_scaling"]
        params = self.section.get("rope_parameters")
        if isinstance(params, dict):
            if self.spec.nested is not None:
                return ("rope_parameters", self.spec.scaled_layer_type), params.get(self.spec.scaled_layer_type) or {}
            return ("rope_parameters",), params
        return ("rope_scaling",), {}

    def key(self, *path) -> str:
        return ".".join(str(p) for p in (*self.prefix, *path))

    def set(self, path: tuple, value: Any, file: str = CONFIG) -> tuple:
        return ("set", file, (*self.prefix, *path) if file == CONFIG else tuple(path), value)

    def delete(self, path: tuple) -> tuple:
        return ("del", CONFIG, (*self.prefix, *path))

    def engine_names(self, predicate: Callable[[dict], bool]) -> list[str]:
        return [row["name"] for row in self.table if predicate(row)]

    def served(self) -> int:
        row = next(r for r in self.table if r["engine"] == "transformers5")
        return row["context"] or self.spec.max_position_embeddings


CHECKS: list[tuple[str, str, Callable[[Context], list[Finding]]]] = []


def check(check_id: str, summary: str):
    def register(fn):
        CHECKS.append((check_id, summary, fn))
        return fn
    return register


def _rope_type(entry: dict) -> str:
    return str(entry.get("rope_type", entry.get("type", "default")))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------------
# The checks


@check("yarn-factor-mismatch", "YaRN factor disagrees with max_position_embeddings / original")
def _yarn_factor(ctx: Context) -> list[Finding]:
    spec = ctx.spec
    path, entry = ctx.scaling_entry()
    rope_type = _rope_type(entry)
    factor = entry.get("factor")
    # Only YaRN ties the factor to the two lengths: Llama 3.1 ships llama3 ×8 over 8192 with 131072
    # advertised (long-context training covers the rest), and vLLM serves llama3/longrope as advertised.
    if rope_type != "yarn" or not isinstance(factor, (int, float)):
        return []
    L0 = ctx.section.get("original_max_position_embeddings", entry.get("original_max_position_embeddings"))
    if not isinstance(L0, (int, float)) or L0 <= 0:
        return []
    max_pos = ctx.section.get("max_position_embeddings", spec.max_position_embeddings)
    if math.isclose(max_pos, L0 * factor, rel_tol=1e-9):
        return []
    target = int(round(L0 * factor))
    recomputed = max_pos / L0
    return [Finding(
        "yarn-factor-mismatch", "error", ctx.key("max_position_embeddings"),
        f"YaRN factor {factor:g} × original {L0} = {target}, but max_position_embeddings is {max_pos}: "
        f"vLLM (0.33), SGLang, TGI and llama.cpp serve {max_pos} tokens although the factor is scaled for {target}; "
        "transformers "
        f"4.51–4.55 and exllamav3 recompute the factor as {max_pos}/{L0} = {recomputed:.4g} and so compute "
        "different frequencies",
        f"set max_position_embeddings to {target} (= original × factor)",
        ["vLLM", "SGLang", "TGI", "llama.cpp (after conversion)", "transformers 4.4x–4.5x", "exllamav3"],
        [ctx.set(("max_position_embeddings",), target)])]


@check("missing-original", "original_max_position_embeddings missing where the method needs it")
def _missing_original(ctx: Context) -> list[Finding]:
    path, entry = ctx.scaling_entry()
    rope_type = _rope_type(entry)
    if rope_type not in ("yarn", "llama3", "longrope"):
        return []
    top = ctx.section.get("original_max_position_embeddings")
    nested = entry.get("original_max_position_embeddings")
    max_pos = ctx.section.get("max_position_embeddings", ctx.spec.max_position_embeddings)
    factor = entry.get("factor")
    out = []
    if top is None and nested is None:
        guess = max_pos / factor if isinstance(factor, (int, float)) and factor > 1 else None
        patch = []
        fix = "add original_max_position_embeddings (the trained context) to the scaling entry"
        if guess is not None and guess == int(guess):
            fix = (f"add original_max_position_embeddings = {int(guess)} (max_position_embeddings / factor), "
                   "if that is the trained context")
            patch = [ctx.set((*path, "original_max_position_embeddings"), int(guess))]
            if rope_type in ("llama3", "longrope"):
                patch.append(ctx.set(("original_max_position_embeddings",), int(guess)))
        out.append(Finding(
            "missing-original", "error", ctx.key(*path, "original_max_position_embeddings"),
            f"{rope_type} has no original_max_position_embeddings: transformers v5 silently takes "
            f"max_position_embeddings ({max_pos}) as the trained context, which moves the {rope_type} ramp; "
            "vLLM and TGI fail or guess differently",
            fix, ["transformers ≥ 5", "vLLM", "TGI", "llama.cpp (after conversion)"], patch))
        return out
    if top is None and rope_type in ("llama3", "longrope"):
        if rope_type == "llama3":
            harmless = nested == 8192
            problem = ("llama3 has original_max_position_embeddings only inside the scaling entry: llama.cpp's "
                       "converter reads it at top level and defaults to 8192"
                       + (" (which matches here)" if harmless else f", not {nested}: its rope_freqs come out wrong"))
            engines = ["llama.cpp (after conversion)"]
        else:
            harmless = False
            problem = ("longrope has original_max_position_embeddings only inside the scaling entry: Phi3's "
                       "modelling code, TGI and llama.cpp read it at top level")
            engines = ["transformers 4.4x–4.5x", "TGI", "llama.cpp (after conversion)"]
        out.append(Finding(
            "missing-original", "info" if harmless else "warning", ctx.key("original_max_position_embeddings"),
            problem, f"add top-level original_max_position_embeddings = {nested}", engines,
            [ctx.set(("original_max_position_embeddings",), nested)]))
    return out


@check("type-and-rope-type", "`type` and `rope_type` both present, or in conflict")
def _type_keys(ctx: Context) -> list[Finding]:
    out = []
    for path, entry in ctx.entries():
        if "type" not in entry or "rope_type" not in entry:
            continue
        if entry["type"] != entry["rope_type"]:
            out.append(Finding(
                "type-and-rope-type", "error", ctx.key(*path, "type"),
                f"{'.'.join(path)} has type={entry['type']!r} and rope_type={entry['rope_type']!r}: vLLM refuses "
                "the conflict, transformers ≥ 5 uses rope_type, transformers 4.x and TGI use type",
                f"remove type (keep rope_type {entry['rope_type']!r}), after checking which one is right",
                ["vLLM", "transformers ≥ 5", "transformers 4.4x–4.5x", "TGI", "exllamav2"],
                [ctx.delete((*path, "type"))]))
        else:
            out.append(Finding(
                "type-and-rope-type", "warning", ctx.key(*path, "type"),
                f"{'.'.join(path)} has both type and rope_type ({entry['rope_type']!r}): exllamav2 asserts on that",
                "remove the legacy type key", ["exllamav2"], [ctx.delete((*path, "type"))]))
    return out


def _normalised(entry: dict) -> dict:
    d = {k: v for k, v in entry.items() if k not in ("rope_theta", "partial_rotary_factor", "type")}
    d["rope_type"] = _rope_type(entry)
    return {k: (float(v) if _is_int(v) else v) for k, v in d.items()}


def _derived(ctx: Context, legacy: dict) -> dict:
    """A legacy entry with what every reader derives when a fixed legacy shape leaves it out (Phi-3's
    {type, short_factor, long_factor}): L0 from the top level, LongRoPE's factor as max / L0."""
    full = dict(legacy)
    top = ctx.section.get("original_max_position_embeddings")
    if "original_max_position_embeddings" not in full and isinstance(top, (int, float)):
        full["original_max_position_embeddings"] = top
        if _rope_type(full) == "longrope" and "factor" not in full:
            full["factor"] = ctx.section.get("max_position_embeddings", ctx.spec.max_position_embeddings) / top
    return full


@check("stale-rope-scaling", "a stale rope_scaling beside rope_parameters with different values")
def _stale(ctx: Context) -> list[Finding]:
    legacy = ctx.section.get("rope_scaling")
    params = ctx.section.get("rope_parameters")
    if not isinstance(legacy, dict) or not legacy or not isinstance(params, dict) or not params:
        return []
    if ctx.spec.nested is not None:
        target_path = ("rope_parameters", ctx.spec.scaled_layer_type)
        current = params.get(ctx.spec.scaled_layer_type) or {}
    else:
        target_path, current = ("rope_parameters",), params
    if _normalised(_derived(ctx, legacy)) == _normalised(current):
        return []
    diff = sorted(k for k in set(_normalised(legacy)) | set(_normalised(current))
                  if _normalised(legacy).get(k) != _normalised(current).get(k))
    merged = {**{k: v for k, v in current.items() if k in ("rope_theta", "partial_rotary_factor")},
              **{k: v for k, v in legacy.items() if k != "type"}}
    merged["rope_type"] = _rope_type(legacy)
    return [Finding(
        "stale-rope-scaling", "error", ctx.key("rope_scaling"),
        f"rope_scaling and {'.'.join(target_path)} disagree ({', '.join(diff)}): transformers ≥ 5 (and vLLM/SGLang "
        "through it) use rope_scaling, while a re-save by transformers ≥ 5 keeps only rope_parameters, so the "
        "model changes behaviour the next time it is saved",
        f"make {'.'.join(target_path)} carry rope_scaling's values (what engines use today), or delete the stale one",
        ["transformers ≥ 5", "vLLM", "SGLang"],
        [ctx.set(target_path, merged)])]


@check("original-disagrees", "top-level original_max_position_embeddings disagrees with the nested one")
def _original_disagrees(ctx: Context) -> list[Finding]:
    top = ctx.section.get("original_max_position_embeddings")
    path, entry = ctx.scaling_entry()
    nested = entry.get("original_max_position_embeddings")
    if top is None or nested is None or top == nested or _rope_type(entry) == "default":
        return []
    max_pos = ctx.section.get("max_position_embeddings", ctx.spec.max_position_embeddings)
    factor = entry.get("factor")
    right = nested
    if isinstance(factor, (int, float)) and math.isclose(top * factor, max_pos) and not math.isclose(nested * factor, max_pos):
        right = top
    patch = [ctx.set(("original_max_position_embeddings",), right), ctx.set((*path, "original_max_position_embeddings"), right)]
    return [Finding(
        "original-disagrees", "error", ctx.key("original_max_position_embeddings"),
        f"top-level original_max_position_embeddings ({top}) disagrees with {'.'.join(path)}'s ({nested}): "
        "transformers ≥ 5 and vLLM use the top-level one, transformers 4.x, TGI, exllamav2 and llama.cpp's YaRN "
        "conversion the nested one, so engines compute different frequencies",
        f"set both to {right}" + (" (the one consistent with max_position_embeddings / factor)"
                                   if right == top else " (the scaling entry's own value)"),
        ["transformers ≥ 5", "vLLM", "transformers 4.4x–4.5x", "TGI", "exllamav2", "llama.cpp (after conversion)"],
        patch)]


@check("linear-max-multiplied", "linear/dynamic with max_position_embeddings already multiplied")
def _linear_multiplied(ctx: Context) -> list[Finding]:
    path, entry = ctx.scaling_entry()
    rope_type = _rope_type(entry)
    factor = entry.get("factor")
    if rope_type not in ("linear", "dynamic") or not isinstance(factor, (int, float)) or factor <= 1:
        return []
    max_pos = ctx.section.get("max_position_embeddings", ctx.spec.max_position_embeddings)
    L0 = ctx.section.get("original_max_position_embeddings", entry.get("original_max_position_embeddings"))
    model_type = ctx.spec.model_type
    vllm = next(r for r in ctx.table if r["engine"] == "vllm")
    if fam.publishes_scaled_max(model_type):
        return [Finding(
            "linear-max-multiplied", "info", ctx.key("max_position_embeddings"),
            f"Gemma 3 ships {rope_type} ×{factor:g} with max_position_embeddings {max_pos} already scaled; vLLM "
            "special-cases gemma3 and serves it as is, while engines that multiply by the factor (SGLang) "
            f"advertise {int(max_pos * factor)}",
            "nothing to change for vLLM/transformers; cap the context explicitly in other engines",
            ["SGLang"])]
    if not isinstance(L0, (int, float)) or not math.isclose(max_pos, L0 * factor):
        return []
    return [Finding(
        "linear-max-multiplied", "error", ctx.key("max_position_embeddings"),
        f"{rope_type} ×{factor:g} with max_position_embeddings {max_pos} = {L0} × {factor:g} already: vLLM and "
        f"SGLang multiply it by the factor again and serve {vllm['context']} tokens (L0·s²), far past what the "
        "scaling covers" + ("; transformers and TGI take max_position_embeddings as the trained length for "
                            "dynamic, so it only starts scaling past it" if rope_type == "dynamic" else ""),
        f"set max_position_embeddings back to the trained context {L0}",
        ["vLLM", "SGLang"] + (["transformers ≥ 5", "TGI"] if rope_type == "dynamic" else []),
        [ctx.set(("max_position_embeddings",), int(L0))])]


@check("type-not-portable", "`dynamic` or `ntk` scaling types, and where they are not honoured")
def _not_portable(ctx: Context) -> list[Finding]:
    path, entry = ctx.scaling_entry()
    rope_type = _rope_type(entry)
    factor = entry.get("factor")
    if rope_type == "dynamic":
        how = {eng.STATIC: "static (computed once at max_position_embeddings × factor)", eng.DROPPED: "dropped",
               eng.REFUSED: "refused"}
        parts = []
        for engine in eng.ENGINES:
            status = engine.types.value.get("dynamic")
            if status in how:
                parts.append(f"{engine.name}: {how[status]}")
        return [Finding(
            "type-not-portable", "warning", ctx.key(*path, "rope_type"),
            "dynamic NTK is honoured only by transformers and TGI; " + "; ".join(parts),
            f"convert to a static method every engine reads: `ropeconv extend MODEL --method yarn --factor "
            f"{factor if factor is not None else 'S'} --rebase` (or --method ntk)",
            [p.split(":")[0] for p in parts])]
    if rope_type == "ntk":
        return [Finding(
            "type-not-portable", "error", ctx.key(*path, "rope_type"),
            "rope_type 'ntk' exists only in vLLM: transformers, SGLang, TGI, llama.cpp and exllama do not know it",
            "express static NTK as plain RoPE with a larger θ: `ropeconv extend MODEL --method ntk --factor "
            f"{factor if factor is not None else 'S'} --rebase`",
            ["transformers ≥ 5", "transformers 4.4x–4.5x", "SGLang", "TGI", "llama.cpp (after conversion)",
             "exllamav2", "exllamav3"])]
    return []


def _default_attention(rope_type: str, entry: dict, spec: RopeSpec) -> float | None:
    factor = entry.get("factor")
    if rope_type == "yarn" and isinstance(factor, (int, float)):
        return yarn_attention_factor(float(factor), {k: v for k, v in entry.items() if k != "attention_factor"})
    if rope_type == "longrope":
        if not isinstance(factor, (int, float)):
            factor = spec.max_position_embeddings / spec.original_context
        return longrope_attention_factor(float(factor), spec.original_context, {})
    return None


@check("attention-factor-ignored", "an explicit attention_factor that several engines ignore")
def _attention_factor(ctx: Context) -> list[Finding]:
    path, entry = ctx.scaling_entry()
    value = entry.get("attention_factor")
    rope_type = _rope_type(entry)
    if value is None or not isinstance(value, (int, float)):
        return []
    default = _default_attention(rope_type, entry, ctx.spec)
    ignoring = ctx.engine_names(lambda r: r["attention_factor"].startswith("differs"))
    if default is not None and math.isclose(float(value), default, rel_tol=1e-6):
        return [Finding(
            "attention-factor-ignored", "info", ctx.key(*path, "attention_factor"),
            f"attention_factor {value:g} equals the default every engine computes for {rope_type}; it is redundant",
            "remove it (engines that ignore it compute the same value)", [],
            [ctx.delete((*path, "attention_factor"))])]
    return [Finding(
        "attention-factor-ignored", "warning", ctx.key(*path, "attention_factor"),
        f"attention_factor {value:g} differs from the {rope_type} default"
        + (f" {default:.6g}" if default is not None else "")
        + ": SGLang (0.5.23, run), TGI and exllamav2 ignore it and llama.cpp recomputes it, so their logits are "
          "scaled differently" + (f" (differs here in: {', '.join(ignoring)})" if ignoring else ""),
        "keep it only if the model was trained with it; otherwise remove it",
        ignoring or ["SGLang", "TGI", "exllamav2", "llama.cpp (after conversion)"])]


@check("integer-values", "integer values where transformers expects floats")
def _integers(ctx: Context) -> list[Finding]:
    out = []
    for path, entry in ctx.entries():
        for key in FLOAT_PARAMS:
            value = entry.get(key)
            if not _is_int(value):
                continue
            severe = key == "attention_factor"
            out.append(Finding(
                "integer-values", "warning" if severe else "info", ctx.key(*path, key),
                f"{'.'.join(path)}.{key} is the integer {value}: "
                + ("transformers ≥ 5 warns that attention_factor must be a float" if severe else
                   "transformers 4.x warns that it must be a float (5.x accepts it)"),
                f"write it as {float(value)!r}",
                ["transformers ≥ 5"] if severe else ["transformers 4.4x–4.5x"],
                [ctx.set((*path, key), float(value))]))
    return out


@check("tokenizer-cap", "tokenizer model_max_length capping the context")
def _tokenizer(ctx: Context) -> list[Finding]:
    if not isinstance(ctx.tokenizer, dict):
        return []
    limit = ctx.tokenizer.get("model_max_length")
    if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit >= NO_LIMIT:
        return []
    served = ctx.served()
    if limit >= served:
        return []
    return [Finding(
        "tokenizer-cap", "warning", f"{TOKENIZER_CONFIG}:model_max_length",
        f"tokenizer_config.json caps model_max_length at {int(limit)}, below the {served} tokens the config gives: "
        "tokenizers truncate there (truncation=True) and warn past it, and vLLM caps pooling models at it",
        f"raise model_max_length to {served}", ["transformers (tokenizer)", "vLLM"],
        [ctx.set(("model_max_length",), served, file=TOKENIZER_CONFIG)])]


@check("stored-buffers", "stored rotary buffers that disagree with the config")
def _buffers(ctx: Context) -> list[Finding]:
    if not ctx.buffers or ctx.folder is None:
        return []
    from ropeconv.buffers import decode, read_tensor_bytes

    want, attention = eng.intended(ctx.spec)
    base, _ = unscaled(ctx.spec.basis())
    remote = bool(ctx.config.get("auto_map"))
    bad, unscaled_hits = [], 0
    for buf in ctx.buffers:
        dtype, shape, raw = read_tensor_bytes(ctx.folder / buf.file, buf.name)
        values = decode(raw, dtype)
        tol = 1e-5 if dtype in ("F32", "F64") else 1e-2
        if buf.kind == "inv_freq":
            ok = eng.same(values, want, rel=tol)
            unscaled_hits += (not ok) and eng.same(values, base, rel=tol)
        else:
            ok = _cache_matches(buf, shape, values, want, attention, tol)
        if not ok:
            bad.append(buf)
    if not bad:
        return []
    names = ", ".join(b.name for b in bad[:3]) + (f" … ({len(bad)} in all)" if len(bad) > 3 else "")
    what = ("hold the unscaled frequencies" if unscaled_hits == len(bad) and ctx.spec.is_scaled
            else "do not match the frequencies the config gives")
    return [Finding(
        "stored-buffers", "error" if remote else "warning", names,
        f"stored rotary buffers {what}: TGI's loader"
        + (" and this model's remote code (auto_map)" if remote else "")
        + " read them, while transformers ≥ 4.32 ignores them, so engines disagree",
        "rewrite them from the config (ropeconv check --fix, or ropeconv extend --buffers rewrite), or drop them",
        ["TGI"] + (["remote code"] if remote else []),
        [("buffers",)])]


def _cache_matches(buf, shape, values, inv, attention, tol) -> bool:
    positions, width = shape[-2], shape[-1]
    freqs = list(inv) + list(inv) if width == 2 * len(inv) else list(inv)
    if len(freqs) != width or positions < 2:
        return False
    row = values[width:2 * width]  # position 1
    fn = math.cos if buf.kind == "cos" else math.sin
    return all(math.isclose(v, fn(f) * attention, rel_tol=tol, abs_tol=tol) for v, f in zip(row, freqs))


@check("longrope-length", "longrope factor lists of the wrong length")
def _longrope_lists(ctx: Context) -> list[Finding]:
    out = []
    expected = ctx.spec.rotary_dim // 2
    for path, entry in ctx.entries():
        if _rope_type(entry) not in ("longrope", "su"):
            continue
        for key in ("short_factor", "long_factor"):
            values = entry.get(key)
            if isinstance(values, list) and len(values) != expected:
                out.append(Finding(
                    "longrope-length", "error", ctx.key(*path, key),
                    f"{key} has {len(values)} numbers but the model rotates {ctx.spec.rotary_dim} dims "
                    f"({expected} pairs): transformers warns and then fails to broadcast, vLLM and llama.cpp refuse",
                    f"supply exactly {expected} factors (rotary dims / 2)",
                    ["transformers ≥ 5", "vLLM", "llama.cpp (after conversion)"]))
    return out


@check("trained-shorter", "a trained length shorter than advertised (Qwen3)")
def _trained_shorter(ctx: Context) -> list[Finding]:
    family = ctx.spec.family
    if not family or not family.trained_context:
        return []
    trained = family.trained_context
    max_pos = ctx.spec.max_position_embeddings
    if not ctx.spec.is_scaled and max_pos > trained:
        return [Finding(
            "trained-shorter", "warning", ctx.key("max_position_embeddings"),
            f"{family.note}: positions past {trained} are extrapolated in every engine",
            f"serve at most {trained} tokens, or extend from the trained length: `ropeconv extend MODEL --method "
            f"yarn --factor 4 --original-context {trained}`", ["all engines"])]
    if ctx.spec.is_scaled and ctx.spec.original_context > trained:
        return [Finding(
            "trained-shorter", "warning", ctx.key("original_max_position_embeddings"),
            f"the scaling starts from {ctx.spec.original_context} tokens, but {family.name} was trained at {trained}",
            f"rebase the scaling on {trained}: `ropeconv extend MODEL --method {ctx.spec.rope_type} --rebase "
            f"--original-context {trained} --target-context {ctx.spec.served_context()}`", ["all engines"])]
    return []


@check("sliding-scaled", "scaling applied to sliding-window layers in nested configs")
def _sliding(ctx: Context) -> list[Finding]:
    params = ctx.section.get("rope_parameters")
    if ctx.spec.nested is None or not isinstance(params, dict):
        return []
    out = []
    for layer_type, entry in params.items():
        if layer_type == FULL_ATTENTION or not isinstance(entry, dict) or _rope_type(entry) == "default":
            continue
        theta = entry.get("rope_theta", ctx.section.get("rope_local_base_freq", 10000.0))
        out.append(Finding(
            "sliding-scaled", "warning", ctx.key("rope_parameters", layer_type),
            f"{layer_type} layers are scaled ({_rope_type(entry)}): they only ever see distances up to the sliding "
            "window, so scaling them changes the short-range behaviour they were trained with, in every engine",
            f"set rope_parameters.{layer_type} back to default RoPE (θ {float(theta):g}); scale only {FULL_ATTENTION}",
            ["all engines"],
            [ctx.set(("rope_parameters", layer_type), {"rope_type": "default", "rope_theta": float(theta)})]))
    return out


@check("missing-top-theta", "a missing top-level rope_theta that older readers need")
def _top_theta(ctx: Context) -> list[Finding]:
    section = ctx.section
    if "rope_theta" in section or "rotary_emb_base" in section:
        return []
    params = section.get("rope_parameters")
    if not isinstance(params, dict) or ctx.spec.nested is not None:
        return []
    theta = params.get("rope_theta")
    if theta is None:
        return []
    losers = ctx.engine_names(lambda r: any("rope_theta" in n for n in r["notes"]))
    harmless = math.isclose(float(theta), 10000.0)
    return [Finding(
        "missing-top-theta", "info" if harmless else "warning", ctx.key("rope_theta"),
        f"rope_theta ({float(theta):g}) is only inside rope_parameters (as transformers ≥ 5 saves it): "
        "transformers 4.x, TGI, exllamav2 and older llama.cpp converters read the top-level key and fall "
        "back to θ = 10000" + (", which happens to match" if harmless else ""),
        f"add top-level rope_theta = {float(theta)!r}", losers or ["transformers 4.4x–4.5x", "exllamav2"],
        [ctx.set(("rope_theta",), float(theta))])]


@check("missing-legacy-scaling", "scaling only in rope_parameters, unseen by older readers")
def _legacy_scaling(ctx: Context) -> list[Finding]:
    section = ctx.section
    params = section.get("rope_parameters")
    if (not isinstance(params, dict) or ctx.spec.nested is not None or isinstance(section.get("rope_scaling"), dict)
            and section.get("rope_scaling")):
        return []
    if _rope_type(params) == "default":
        return []
    entry = {k: v for k, v in params.items() if k not in ("rope_theta", "partial_rotary_factor", "type")}
    entry["rope_type"] = _rope_type(params)
    return [Finding(
        "missing-legacy-scaling", "warning", ctx.key("rope_scaling"),
        f"the {entry['rope_type']} scaling is only in rope_parameters: transformers 4.x, TGI, exllamav2 and "
        "older llama.cpp converters read rope_scaling and run the model unscaled",
        "add rope_scaling with the same values (ropeconv writes both shapes)",
        ["transformers 4.4x–4.5x", "TGI", "exllamav2", "llama.cpp (after conversion)"],
        [ctx.set(("rope_scaling",), entry)])]


@check("bad-values", "a factor below 1, method parameters their method refuses (e.g. beta_fast ≤ beta_slow), or a method the family refuses")
def _bad_values(ctx: Context) -> list[Finding]:
    out = []
    path, entry = ctx.scaling_entry()
    rope_type = _rope_type(entry)
    factor = entry.get("factor")
    if rope_type != "default" and isinstance(factor, (int, float)) and factor < 1:
        out.append(Finding("bad-values", "error", ctx.key(*path, "factor"),
                           f"factor {factor:g} is below 1: it shrinks the context (transformers warns, engines differ)",
                           "use a factor ≥ 1", ["all engines"]))
    if rope_type in METHODS and METHODS[rope_type].convertible:
        # the method's own validator, the same one every conversion request passes
        given = {k: v for k, v in entry.items() if k in METHODS[rope_type].params}
        try:
            validate_params(rope_type, given)
        except ParamError as exc:
            out.append(Finding("bad-values", "error", ctx.key(*path, exc.name), exc.problem, exc.fix or "",
                               ["all engines"]))
    family = ctx.spec.family
    if family and family.methods is not None and rope_type != "default" and rope_type not in family.methods:
        out.append(Finding("bad-values", "error", ctx.key(*path, "rope_type"),
                           f"{ctx.spec.model_type} with {rope_type}: {family.methods_reason}",
                           f"use {' or '.join(family.methods) or 'no scaling'}", ["transformers ≥ 5"]))
    return out


@check("engine-disagreement", "an engine release that reads this scaling differently (verified rules)")
def _engine_disagreement(ctx: Context) -> list[Finding]:
    """One warning per verified rule (ropeconv.engines.RULES) that applies to this family and method:
    the engine, the releases, and what they compute instead."""
    method = eng.method_of(ctx.spec)
    path, _ = ctx.scaling_entry()
    out = []
    for rule in eng.rules_for(ctx.spec.model_type, method):
        verb = {"fails": "refuses to load it", "context": "serves less than the full context"}.get(
            rule.outcome, "computes different frequencies")
        out.append(Finding(
            "engine-disagreement", "warning", ctx.key(*path),
            f"{rule.versions} {verb}: {rule.computes} (verified against {rule.verified})",
            rule.fix or "serve it with another engine or release", [rule.versions]))
    return out


@check("tokenizer-class", "a tokenizer_class that transformers 4.x does not know (transformers 5's TokenizersBackend)")
def _tokenizer_class(ctx: Context) -> list[Finding]:
    from ropeconv.tokenizer_files import PORTABLE_CLASS, portable_tokenizer_config, unknown_to_transformers4

    name = unknown_to_transformers4(ctx.tokenizer)
    if name is None:
        return []
    portable = portable_tokenizer_config(ctx.folder, ctx.tokenizer) if ctx.folder is not None else None
    return [Finding(
        "tokenizer-class", "warning", f"{TOKENIZER_CONFIG}:tokenizer_class",
        f"tokenizer_class {name!r} is a transformers 5 name that transformers 4.x does not know: llama.cpp's "
        "convert_hf_to_gguf.py (which pins transformers 4.57.6) and every engine release built on transformers "
        "4.x refuse the folder",
        f"set tokenizer_class to {PORTABLE_CLASS[name]!r}, the name both releases load for the same tokenizer.json "
        "(`ropeconv extend` writes it)",
        ["llama.cpp (after conversion)", "transformers 4.4x–4.5x", "vLLM and SGLang releases on transformers 4.x"],
        [ctx.set(("tokenizer_class",), portable["tokenizer_class"], file=TOKENIZER_CONFIG)] if portable else [])]
