"""Runs inside an engine environment (any transformers 4.x/5.x): builds each case's model from its
config.json exactly as transformers loads it, calls the language model's rotary module and prints
what it computes, as JSON on stdout.

Input (argv[1], a JSON file): [{"id": …, "folder": …, "positions": [p, …]}, …]. For each position p
the rotary module is called with position ids [0, 1, p] — the sequence length every dynamic,
per-length rule (dynamic NTK, LongRoPE's short/long switch) looks at is p + 1 — and the inverse
frequencies and attention scaling are read back from the cos/sin it returns at position 1:
angle = atan2(sin, cos) = inv_freq, scale = hypot(cos, sin). Nothing is taken from ropeconv.
Standalone on purpose: ropeconv is not importable in these environments.
"""

import inspect
import json
import math
import sys
import traceback
import warnings

import torch
import transformers
from transformers import AutoConfig

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()


def build_model(folder):
    config = AutoConfig.from_pretrained(folder)
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        from transformers import AutoModelForCausalLM

        cls = AutoModelForCausalLM
        return config, cls.from_config(config)
    return config, cls._from_config(config)


def rotary_of(model):
    found = [(name, m) for name, m in model.named_modules()
             if type(m).__name__.endswith("RotaryEmbedding") and "Vision" not in type(m).__name__
             and "vision" not in name and "visual" not in name]
    if not found:
        raise LookupError("no rotary embedding module in the language model")
    # Gemma 3 in 4.x: rotary_emb (global, scaled) beside rotary_emb_local (sliding layers)
    global_ones = [(n, m) for n, m in found if "local" not in n]
    return (global_ones or found)[0]


def call(rotary, position, mrope):
    """(cos, sin) rows of position 1 while the module serves sequence length position + 1."""
    ids = torch.tensor([[0, 1, position]], dtype=torch.long)
    x = torch.zeros(1, 3, 8, dtype=torch.float32)
    params = inspect.signature(rotary.forward).parameters
    if "position_ids" not in params and "seq_len" in params:
        # the pre-4.48 style of some families: forward(x, seq_len) -> cos/sin tables of seq_len rows
        cos, sin = rotary(x, seq_len=position + 1)
        return cos.reshape(-1, cos.shape[-2], cos.shape[-1])[0, 1], sin.reshape(-1, sin.shape[-2], sin.shape[-1])[0, 1]
    kwargs = {"layer_type": "full_attention"} if "layer_type" in params else {}
    out = None
    if mrope:
        try:
            out = rotary(x, ids.unsqueeze(0).expand(3, 1, 3), **kwargs)
        except Exception:  # a 1-D rotary class chosen for an M-RoPE model: try plain positions
            out = None
    if out is None:
        out = rotary(x, ids, **kwargs)
    cos, sin = out
    d = cos.shape[-1]
    return cos.reshape(-1, 3, d)[0, 1], sin.reshape(-1, 3, d)[0, 1]


def probe(cos, sin):
    d = cos.shape[-1]
    c = cos.double()
    s = sin.double()
    angle = torch.atan2(s, c).tolist()
    scale = float(torch.hypot(c, s)[0])
    half = d // 2
    if all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(angle[:half], angle[half:])):
        inv = angle[:half]  # cat(freqs, freqs)
    else:
        inv = angle[0::2]  # repeat_interleave(freqs, 2): GPT-J style rotary
    return inv, scale


def run_case(case):
    config, model = build_model(case["folder"])
    name, rotary = rotary_of(model)
    mrope = bool((getattr(config, "rope_scaling", None) or {}).get("mrope_section")
                 or (getattr(getattr(config, "text_config", None), "rope_scaling", None) or {}).get("mrope_section")
                 or "vl" in (config.model_type or ""))
    out = []
    for position in case["positions"]:
        with torch.no_grad():
            cos, sin = call(rotary, position, mrope)
        inv, scale = probe(cos, sin)
        out.append({"position": position, "inv_freq": inv, "attention_scaling": scale})
    return {"ok": True, "rotary_class": type(rotary).__name__, "module": name, "probes": out}


def main():
    cases = json.load(open(sys.argv[1]))
    results = {}
    for case in cases:
        try:
            results[case["id"]] = run_case(case)
        except Exception as exc:  # the engine refusing the config is a result, not a runner failure
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            results[case["id"]] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                                   "where": f"{tb.filename.split('site-packages/')[-1]}:{tb.lineno}"}
    json.dump({"transformers": transformers.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
