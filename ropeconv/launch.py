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
import re
import shlex
from dataclasses import asdict, dataclass

from ropeconv import engines as eng
from ropeconv import families as fam
from ropeconv.spec import language_section
from ropeconv.text import escaped_char, is_control

SERVE = "serve"
OVERRIDE = "override"
LLAMACPP_ARGS = "llama.cpp's common/arg.cpp (llama-cpp-python 0.3.36): -c, --rope-scaling {none,linear,yarn}, " \
                "--rope-scale N (freq scale 1/N), --yarn-orig-ctx N, --rope-freq-base N; read, not run"


@dataclass(frozen=True)
class LaunchLine:
    engine: str  # the engine's name as `check`'s table prints it
    kind: str  # SERVE or OVERRIDE
    command: str  # what to run, every argument quoted (MODEL / MODEL.gguf stand for a path ropeconv does not know)
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


def shell_quote(arg: str) -> str:
    """One shell word meaning exactly `arg`, on one line: `shlex.quote`, or bash's $'…' quoting where `arg`
    holds a control character (a newline in a path would otherwise split the printed command in two)."""
    if not any(is_control(ch) for ch in arg):
        return shlex.quote(arg)
    body = "".join(escaped_char(ch) if is_control(ch) else {"\\": "\\\\", "'": "\\'"}.get(ch, ch) for ch in arg)
    return f"$'{body}'"


def shell_join(argv: list[str]) -> str:
    """A command line from an argument list: every argument quoted (`shell_quote`); nothing interpolated."""
    return " ".join(shell_quote(str(a)) for a in argv)


def gguf_beside(model: str) -> str:
    """Where the llama.cpp line writes the converted GGUF of the Hugging Face folder `model`."""
    return model.rstrip("/") + ".gguf"


def ollama_name(gguf: str) -> str:
    """An Ollama model name from a GGUF path: its stem, lower-cased, with what Ollama refuses replaced."""
    stem = re.sub(r"\.gguf$", "", gguf.rstrip("/").rsplit("/", 1)[-1], flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "model"


def _vllm(c: Conversion, model: str) -> list[LaunchLine]:
    if c.method == "longrope":
        return [LaunchLine("vLLM", SERVE, shell_join(["vllm", "serve", model, "--max-model-len", c.served_context]),
                           "vLLM serves LongRoPE models at L0 with the short factors unless --max-model-len asks "
                           "for more", True, next(r.verified for r in eng.RULES
                                                   if r.engine == "vllm" and "longrope" in r.methods))]
    return [LaunchLine("vLLM", SERVE, shell_join(["vllm", "serve", model]),
                       f"vLLM derives {c.served_context} tokens from the config", False,
                       "vllm 0.33.0's _get_and_verify_max_len, run by tests/test_conformance_vllm.py")]


def _sglang(c: Conversion, model: str) -> list[LaunchLine]:
    return [LaunchLine("SGLang", SERVE,
                       shell_join(["python", "-m", "sglang.launch_server", "--model-path", model,
                                   "--context-length", c.served_context]),
                       "SGLang derives the context from the config; --context-length states it explicitly",
                       False, "sglang 0.5.23's get_context_length, run by tests/test_conformance_sglang.py")]


CONVERT = "convert_hf_to_gguf.py"  # llama.cpp's converter, run from a llama.cpp checkout


def _convert(folder: str) -> str:
    return shell_join(["python", CONVERT, folder, "--outfile", gguf_beside(folder)])


def _llamacpp(c: Conversion, model: str, source: str) -> list[LaunchLine]:
    gguf = gguf_beside(model)
    rules = eng.rules_for(c.model_type, c.method, "llamacpp")
    context = next((r for r in rules if r.outcome == "context"), None)
    if context is not None:
        return [LaunchLine("llama.cpp", SERVE, f"{_convert(model)} && {_llama_server_argv(gguf, c.served_context)}",
                           f"{CONVERT} (from a llama.cpp checkout) writes context_length = L0 for this method; -c "
                           "asks for the full context", True, context.verified)]
    if rules:  # the converter drops the scaling: convert the unscaled source, then extend the GGUF
        rule = rules[0]
        if c.method == "dynamic":
            command = shell_join(["ropeconv", "extend", source, "--method", "yarn", "--factor", f"{c.factor:g}"])
        else:
            command = f"{_convert(source)} && " + shell_join(["ropeconv", "extend", gguf_beside(source), "--method",
                                                              c.method, "--factor", f"{c.factor:g}"])
        return [LaunchLine("llama.cpp", SERVE, command, f"{rule.computes}; {rule.fix}", True, rule.verified)]
    return [LaunchLine("llama.cpp", SERVE, f"{_convert(model)} && {_llama_server_argv(gguf, c.served_context)}",
                       f"{CONVERT} (from a llama.cpp checkout) writes context_length {c.served_context}; "
                       "llama.cpp's default -c 0 reads it, -c states it", False, LLAMACPP_CONVERTED)]


LLAMACPP_CONVERTED = ("tests/test_conformance_llamacpp.py (converter metadata); -c 0 = the model's context_length "
                      "in llama.cpp's common/arg.cpp (read)")


def _llama_server_argv(gguf: str, served_context: int) -> str:
    return shell_join(["llama-server", "-m", gguf, "-c", served_context])


def _llama_server(served_context: int, gguf: str, says: str) -> list[LaunchLine]:
    return [LaunchLine("llama.cpp", SERVE, _llama_server_argv(gguf, served_context),
                       f"{says} {served_context}; llama.cpp's default -c 0 reads it, -c states it", False,
                       LLAMACPP_CONVERTED)]


# Ollama reads a Modelfile: printf's format is the constant '%s\n' and each Modelfile line an argument, so
# no path (with %, quotes, $, spaces) can change what printf writes
def ollama_command(gguf: str, served_context: int) -> str:
    """Write a Modelfile for `gguf` with num_ctx, then create the Ollama model from it."""
    if not gguf.startswith(("/", "./", "../")):
        gguf = "./" + gguf  # Ollama reads a bare name as a model to pull, not a file
    return (shell_join(["printf", "%s\\n", f"FROM {gguf}", f"PARAMETER num_ctx {served_context}"]) + " > Modelfile && "
            + shell_join(["ollama", "create", ollama_name(gguf), "-f", "Modelfile"]))


def _ollama(served_context: int, gguf: str, made_by: str = "") -> list[LaunchLine]:
    return [LaunchLine("Ollama", SERVE, ollama_command(gguf, served_context),
                       made_by + "Ollama runs every model at its own default num_ctx, not the GGUF's context_length",
                       True, "Ollama's Modelfile documentation (num_ctx); not run by the suite")]


def gguf_launch_lines(served_context: int, gguf: str) -> list[LaunchLine]:
    """Serve lines for a GGUF file: its context_length is what llama.cpp serves (after `ropeconv extend`,
    L0·s)."""
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


def _overrides(c: Conversion, source: str = "MODEL") -> list[LaunchLine]:
    out = []
    hf = json.dumps(c.hf_overrides, separators=(",", ":"))
    out.append(LaunchLine(
        "vLLM", OVERRIDE, shell_join(["vllm", "serve", source, "--hf-overrides", hf, "--max-model-len", c.served_context]),
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


def launch_lines(c: Conversion, model: str = "MODEL", source: str = "MODEL") -> list[LaunchLine]:
    """Every serve line (needed or not) and every runtime override for a conversion written to `model`
    (a Hugging Face folder or repo id) from `source` (the unscaled model, where llama.cpp needs it)."""
    return [*_vllm(c, model), *_sglang(c, model), *_llamacpp(c, model, source),
            *_ollama(c.served_context, gguf_beside(model), "the GGUF the llama.cpp line writes; "),
            *_overrides(c, source)]


def from_config(config_after: dict, method: str, factor: float, original_context: int, served_context: int,
                model_type: str, theta: float) -> Conversion:
    """A Conversion from a scaled config.json (what an extend wrote, or what `check` reads) and its θ."""
    return Conversion(model_type=model_type, method=method, factor=float(factor), original_context=int(original_context),
                      served_context=int(served_context), theta=theta, hf_overrides=vllm_override(config_after, model_type))


def launch_report(conversion: Conversion, model: str = "MODEL", source: str = "MODEL") -> list[dict]:
    """`extend`'s "launch" section: JSON-able launch lines for the output at `model`."""
    return [line.to_dict() for line in launch_lines(conversion, model, source)]


def extend_section(conversion: Conversion, model: str = "MODEL", source: str = "MODEL") -> dict:
    """What `extend`'s report adds about engines: the launch lines (`launch`) and the verified rules of
    engine releases that read this output differently (`engine_rules`, as `check` warns about them)."""
    rule_method = "default" if conversion.method == "ntk" else conversion.method
    return {"launch": launch_report(conversion, model, source),
            "engine_rules": [r.to_dict() for r in eng.rules_for(conversion.model_type, rule_method)]}
