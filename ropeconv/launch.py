"""What to run, per engine, to serve an extended model's full context — and the runtime overrides that
apply a method at launch to an unconverted model.

Two kinds of line:

- `serve`: the extended output as written; `needed` is True where the config alone does not give the
  full context in that engine (vLLM's LongRoPE, llama.cpp after converting a linear output, Ollama's
  num_ctx), False where the line only restates what the engine already does;
- `override`: the unconverted source with the method applied at launch (vLLM `--hf-overrides`,
  llama.cpp `--rope-scaling/--rope-scale/--yarn-orig-ctx/--rope-freq-base`), for users who cannot or
  will not rewrite the checkpoint. None where the engine has no such switch (llama3 and longrope need
  tensors in llama.cpp; dynamic has no llama.cpp switch).

Every line says what it was verified against. Pure Python: no torch, no transformers.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass

from ropeconv import engines as eng
from ropeconv import families as fam
from ropeconv.spec import language_section

SERVE = "serve"
OVERRIDE = "override"
LLAMACPP_ARGS = "llama.cpp's common/arg.cpp (llama-cpp-python 0.3.36): -c, --rope-scaling {none,linear,yarn}, " \
                "--rope-scale N (freq scale 1/N), --yarn-orig-ctx N, --rope-freq-base N; read, not run"


@dataclass(frozen=True)
class LaunchLine:
    engine: str  # the engine's name as `check`'s table prints it
    kind: str  # SERVE or OVERRIDE
    command: str  # what to run (MODEL / MODEL.gguf stand for the user's path)
    why: str
    needed: bool  # False: the line restates what the engine does anyway
    verified: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Conversion:
    """What a launch line needs to know about a conversion."""

    model_type: str
    method: str
    factor: float
    original_context: int  # L0
    served_context: int  # L0·s
    theta: float  # θ as written (NTK's enlarged θ for ntk)
    hf_overrides: dict  # what vLLM's --hf-overrides must set (vllm_override)


def _vllm(c: Conversion, model: str) -> list[LaunchLine]:
    if c.method == "longrope":
        return [LaunchLine("vLLM", SERVE, f"vllm serve {shlex.quote(model)} --max-model-len {c.served_context}",
                           "vLLM serves LongRoPE models at L0 with the short factors unless --max-model-len asks "
                           "for more", True, next(r.verified for r in eng.RULES
                                                   if r.engine == "vllm" and "longrope" in r.methods))]
    return [LaunchLine("vLLM", SERVE, f"vllm serve {shlex.quote(model)}",
                       f"vLLM derives {c.served_context} tokens from the config", False,
                       "vllm 0.33.0's _get_and_verify_max_len, run by tests/test_conformance_vllm.py")]


def _sglang(c: Conversion, model: str) -> list[LaunchLine]:
    return [LaunchLine("SGLang", SERVE,
                       f"python -m sglang.launch_server --model-path {shlex.quote(model)} "
                       f"--context-length {c.served_context}",
                       "SGLang derives the context from the config; --context-length states it explicitly",
                       False, "sglang 0.5.23's get_context_length, run by tests/test_conformance_sglang.py")]


def _llamacpp(c: Conversion) -> list[LaunchLine]:
    rules = eng.rules_for(c.model_type, c.method, "llamacpp")
    context = next((r for r in rules if r.outcome == "context"), None)
    if context is not None:
        return [LaunchLine("llama.cpp", SERVE, f"llama-server -m MODEL.gguf -c {c.served_context}",
                           "convert_hf_to_gguf.py writes context_length = L0 for this method; -c asks for the "
                           "full context", True, context.verified)]
    if rules:  # the converter drops the scaling: no launch line brings it back
        rule = rules[0]
        return [LaunchLine("llama.cpp", SERVE, f"ropeconv extend MODEL.gguf --method {c.method} --factor {c.factor:g}"
                           if c.method != "dynamic" else "ropeconv extend MODEL --method yarn …",
                           f"{rule.computes}; {rule.fix}", True, rule.verified)]
    return _llama_server(c.served_context, "MODEL.gguf", "the converted GGUF's context_length is")


def _llama_server(served_context: int, gguf: str, says: str) -> list[LaunchLine]:
    return [LaunchLine("llama.cpp", SERVE, f"llama-server -m {shlex.quote(gguf)} -c {served_context}",
                       f"{says} {served_context}; llama.cpp's default -c 0 reads it, -c states it", False,
                       "tests/test_conformance_llamacpp.py (converter metadata); -c 0 = the model's context_length "
                       "in llama.cpp's common/arg.cpp (read)")]


def _ollama(served_context: int, gguf: str = "./MODEL.gguf") -> list[LaunchLine]:
    modelfile = shlex.quote(f"FROM {gguf}\\nPARAMETER num_ctx {served_context}\\n")
    return [LaunchLine("Ollama", SERVE, f"printf {modelfile} > Modelfile && ollama create MODEL -f Modelfile",
                       "Ollama runs every model at its own default num_ctx, not the GGUF's context_length", True,
                       "Ollama's Modelfile documentation (num_ctx); not run by the suite")]


def gguf_launch_lines(served_context: int, gguf: str) -> list[LaunchLine]:
    """Serve lines for a GGUF file ropeconv extended: its context_length is already L0·s."""
    return [*_llama_server(served_context, gguf, "the GGUF's context_length is"), *_ollama(served_context, gguf)]


# The keys an output's RoPE lives in: the override copies each one the output has, whole. A partial entry
# is not enough: vLLM replaces a dict-valued key outright (ModelConfig._apply_dict_overrides), so a
# rope_parameters without StableLM's partial_rotary_factor or Gemma 3's sliding_attention breaks the model.
OVERRIDE_KEYS = ("rope_scaling", "rope_parameters", "rope_theta", "partial_rotary_factor", "max_position_embeddings",
                 "original_max_position_embeddings")


def vllm_override(config_after: dict, model_type: str) -> dict:
    """The config keys `vllm serve --hf-overrides` must set to apply the method to the unconverted model:
    the output's RoPE keys (the family's own θ and partial-rotary keys included), under `text_config`
    where transformers 5 holds the language model's settings there (vLLM's _update_nested reaches it)."""
    family = fam.family_of(model_type)
    keys = OVERRIDE_KEYS + ((family.theta_key, family.partial_key) if family else ())
    path, section = language_section(config_after)
    hf = {k: section[k] for k in dict.fromkeys(keys) if section.get(k) is not None}
    return {"text_config": hf} if path or (family and family.text_config_in_v5) else hf


def _overrides(c: Conversion) -> list[LaunchLine]:
    out = []
    hf = json.dumps(c.hf_overrides, separators=(",", ":"))
    out.append(LaunchLine(
        "vLLM", OVERRIDE, f"vllm serve MODEL --hf-overrides {shlex.quote(hf)} --max-model-len {c.served_context}",
        "applies the method to the unconverted model's config at launch", True,
        "vllm 0.33.0's config loading with these overrides, run on the unconverted model of every family, serves "
        "the output's length and builds its rotary class and cos/sin cache (Transformers-backend families: the "
        "length) (tests/test_conformance_vllm.py)"))
    flags = {"linear": f"--rope-scaling linear --rope-scale {c.factor:g}",
             "yarn": f"--rope-scaling yarn --rope-scale {c.factor:g} --yarn-orig-ctx {c.original_context}",
             "ntk": f"--rope-freq-base {c.theta:.10g}"}.get(c.method)
    if flags:
        out.append(LaunchLine("llama.cpp", OVERRIDE, f"llama-server -m MODEL.gguf {flags} -c {c.served_context}",
                              "applies the method to the unconverted GGUF at launch", True, LLAMACPP_ARGS))
    return out


def launch_lines(c: Conversion, model: str = "MODEL") -> list[LaunchLine]:
    """Every serve line (needed or not) and every runtime override for a conversion."""
    return [*_vllm(c, model), *_sglang(c, model), *_llamacpp(c), *_ollama(c.served_context), *_overrides(c)]


def from_config(config_after: dict, method: str, factor: float, original_context: int, served_context: int,
                model_type: str, theta: float) -> Conversion:
    """A Conversion from a scaled config.json (what an extend wrote, or what `check` reads) and its θ."""
    return Conversion(model_type=model_type, method=method, factor=float(factor), original_context=int(original_context),
                      served_context=int(served_context), theta=theta, hf_overrides=vllm_override(config_after, model_type))


def launch_report(conversion: Conversion, model: str = "MODEL") -> list[dict]:
    """`extend`'s "launch" section: JSON-able launch lines for the output at `model`."""
    return [line.to_dict() for line in launch_lines(conversion, model)]


def extend_section(conversion: Conversion, model: str = "MODEL") -> dict:
    """What `extend`'s report adds about engines: the launch lines (`launch`) and the verified rules of
    engine releases that read this output differently (`engine_rules`, as `check` warns about them)."""
    rule_method = "default" if conversion.method == "ntk" else conversion.method
    return {"launch": launch_report(conversion, model),
            "engine_rules": [r.to_dict() for r in eng.rules_for(conversion.model_type, rule_method)]}
