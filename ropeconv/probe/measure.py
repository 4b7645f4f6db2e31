"""Loading a model and measuring per-token loss over one long window, without full-vocabulary logits.

One forward pass of the decoder gives the hidden states for the whole window; the LM head and the
cross-entropy then run on chunks of positions, in float32, so the largest temporary is
`chunk × vocab` floats instead of `length × vocab` (16k × 49k logits alone are 3 GB in float32).
torch and transformers are imported inside the functions: this module is imported by the CLI.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ropeconv.errors import RopeconvError
from ropeconv.probe.options import ProbeOptionError

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")
DEFAULT_CHUNK = 1024
DEFAULT_BUCKETS = 8


# ---- devices and loading -------------------------------------------------------------------------

def pick_device(requested: str = "auto") -> str:
    """'auto' picks cuda, then mps, then cpu; an explicit device must be present."""
    import torch

    if requested not in DEVICES:
        from ropeconv.errors import did_you_mean

        raise ProbeOptionError("device", f"{{name}} {requested!r} is not one of {', '.join(DEVICES)}"
                                         f"{did_you_mean(requested, DEVICES)}", "use auto, cuda, mps or cpu")
    has_cuda = torch.cuda.is_available()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if requested == "cuda" and not has_cuda:
        raise ProbeOptionError("device", "{name} cuda was asked for, but torch sees no CUDA GPU",
                               "use {name} auto or cpu (or install a CUDA build of torch)")
    if requested == "mps" and not has_mps:
        raise ProbeOptionError("device", "{name} mps was asked for, but it is not available here",
                               "use {name} auto or cpu")
    return requested


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a probe runs in, and why (recorded in the result as `dtype` and `dtype_reason`)."""

    dtype: str  # "bfloat16", "float16" or "float32"
    reason: str


# CPU features that compute bfloat16 matrix products natively (x86 /proc/cpuinfo `flags`, Arm `Features`).
# Without them torch converts bf16 to float32 and back around every product: several times slower
# than float32 itself (bench/bench_dtype.py: ×4.6 at 2,048 tokens on this project's AVX2-only EPYC).
NATIVE_BF16_FLAGS = {"avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX-BF16", "bf16": "Arm BF16"}


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU feature flags from /proc/cpuinfo (None where it cannot be read: not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags or None


def cpu_dtype_choice(flags: set[str] | None = None) -> DtypeChoice:
    """bfloat16 on a CPU with native bf16 arithmetic, float32 otherwise (exact, and faster there)."""
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return DtypeChoice("float32", "CPU features unknown (no /proc/cpuinfo): float32 is exact and never slow")
    native = [name for flag, name in NATIVE_BF16_FLAGS.items() if flag in flags]
    if native:
        return DtypeChoice("bfloat16", f"CPU computes bfloat16 natively ({', '.join(native)})")
    return DtypeChoice("float32", "CPU has no native bfloat16 (no AVX-512 BF16, AMX or Arm BF16), so "
                                  "bfloat16 would be emulated at several times the cost of float32")


def dtype_choice(device: str, requested: str = "auto") -> DtypeChoice:
    """What `--dtype` means on `device`: an explicit dtype as asked; "auto" the fastest dtype that
    measures perplexity faithfully there — bfloat16 on GPUs (float16 where bf16 is missing), on CPUs
    by their features (`cpu_dtype_choice`)."""
    if requested not in DTYPES:
        from ropeconv.errors import did_you_mean

        raise ProbeOptionError("dtype", f"{{name}} {requested!r} is not one of {', '.join(DTYPES)}"
                                        f"{did_you_mean(requested, DTYPES)}", "use auto, bfloat16, float16 or float32")
    if requested != "auto":
        return DtypeChoice(requested, "asked for with --dtype")
    if device == "cuda":
        import torch

        if torch.cuda.is_bf16_supported():
            return DtypeChoice("bfloat16", "CUDA GPU with bfloat16")
        return DtypeChoice("float16", "CUDA GPU without bfloat16")
    if device == "mps":
        return DtypeChoice("bfloat16", "Apple GPU (MPS): half the memory of float32")
    return cpu_dtype_choice()


def pick_dtype(device: str, requested: str = "auto"):
    """The torch dtype for `device` (see `dtype_choice` for what "auto" picks and why)."""
    import torch

    return getattr(torch, dtype_choice(device, requested).dtype)


@contextmanager
def quiet_transformers():
    """transformers' own progress bars and notes would interleave with ours."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(path: Path):
    """The tokenizer of a model folder (transformers' AutoTokenizer), or a one-line error."""
    from transformers import AutoTokenizer

    with quiet_transformers():
        try:
            return AutoTokenizer.from_pretrained(path)
        except Exception as exc:  # the loader's errors vary; the user gets one line
            raise RopeconvError(f"cannot load the tokenizer of {path}: {first_line(exc)}",
                                "the model folder needs its tokenizer files (tokenizer.json or similar)") from None


def load_model(path: Path, device: str, dtype) -> object:
    """The causal LM in `path`, ready for inference: SDPA attention, weights on `device`
    (spread over every visible GPU by accelerate when it does not fit on one)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"dtype": dtype, "output_loading_info": True}
    if device == "cuda":
        kwargs["device_map"] = "auto"
    elif device == "mps":
        kwargs["device_map"] = {"": "mps"}
    with quiet_transformers():
        try:
            try:
                model, info = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", **kwargs)
            except ValueError as exc:  # an architecture without SDPA support: its default attention
                if "sdpa" not in str(exc).lower():
                    raise
                model, info = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except RopeconvError:
            raise
        except Exception as exc:  # whatever the loader raises, the user gets one line
            if is_out_of_memory(exc):
                raise out_of_memory_error(f"loading {path}", device) from None
            raise RopeconvError(f"cannot load {path} as a causal language model: {first_line(exc)}",
                                "pass a Hugging Face model folder with config.json and its weights") from None
    # transformers fills tensors the weights lack with random values: probing that would judge noise
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise RopeconvError(f"the weights in {path} lack {len(missing)} of the model's tensors (e.g. {missing[0]})",
                            "the weight files are incomplete or belong to another model: pass the complete folder")
    model.eval()
    return model


def model_device(model):
    return model.get_input_embeddings().weight.device


# ---- the measurement -----------------------------------------------------------------------------

def decoder_and_head(model):
    """(decoder without head, LM head, logits post-processing): what a causal LM's forward chains."""
    decoder = getattr(model, model.base_model_prefix, None) or model.get_decoder()
    head = model.get_output_embeddings()
    if decoder is None or head is None or decoder is model:
        raise RopeconvError(f"{type(model).__name__} has no separate decoder and LM head to probe",
                            "probe a causal language model (…ForCausalLM)")
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    softcap = getattr(config, "final_logit_softcapping", None)  # Gemma 2/3
    logit_scale = getattr(config, "logit_scale", None)  # Cohere

    def post(logits):
        if logit_scale is not None:
            logits = logits * logit_scale
        if softcap:
            logits = softcap * (logits / softcap).tanh()
        return logits

    return decoder, head, post


def decoder_layers(decoder) -> list:
    layers = getattr(decoder, "layers", None) or getattr(decoder, "h", None)
    return list(layers) if layers is not None else []


def token_losses(model, ids: list[int], *, chunk: int = DEFAULT_CHUNK,
                 advance: Callable[[int], None] | None = None):
    """Negative log-likelihood (nats, float32, on CPU) of token t+1 given tokens 0..t, for every
    query position t of one window: `len(ids) - 1` values.

    `advance(1)` is called after each decoder layer and each loss chunk (for a progress bar).
    """
    import torch
    import torch.nn.functional as F

    decoder, head, post = decoder_and_head(model)
    hooks = [layer.register_forward_hook(lambda *_: advance(1)) for layer in decoder_layers(decoder)] if advance else []
    try:
        with torch.inference_mode():
            input_ids = torch.tensor([ids], dtype=torch.long, device=model_device(model))
            hidden = decoder(input_ids=input_ids, use_cache=False).last_hidden_state[0]
            del input_ids
            head_device = head.weight.device
            targets = torch.tensor(ids[1:], dtype=torch.long, device=head_device)
            losses = torch.empty(len(ids) - 1, dtype=torch.float32)
            for start in range(0, len(ids) - 1, chunk):
                end = min(start + chunk, len(ids) - 1)
                logits = post(head(hidden[start:end].to(head_device)).float())
                losses[start:end] = F.cross_entropy(logits, targets[start:end], reduction="none").cpu()
                del logits
                if advance:
                    advance(1)
    finally:
        for hook in hooks:
            hook.remove()
    return losses


def steps_for(model, length: int, chunk: int = DEFAULT_CHUNK) -> int:
    """How many times token_losses calls advance(): for a determinate progress bar."""
    decoder, _, _ = decoder_and_head(model)
    return len(decoder_layers(decoder)) + math.ceil((length - 1) / chunk)


def flops_per_token(model) -> tuple[float, float]:
    """(matrix-product flops per token, attention flops per token²) of one forward pass with the loss:
    2 per weight the token passes through (decoder and LM head; embeddings are a lookup), and for
    causal attention 2 products (QKᵀ, AV) of 2 flops over half the length × length pairs, per layer
    and head. A time estimate scales a timed warm-up by these."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    decoder_weights = total - embed.numel() - (0 if head is embed else head.numel())
    layers = int(getattr(config, "num_hidden_layers", 0) or len(decoder_layers(decoder_and_head(model)[0])))
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return 2.0 * (decoder_weights + head.numel()), 2.0 * layers * heads * head_dim


# ---- summaries -----------------------------------------------------------------------------------

def bucket_edges(positions: int, trained: int, count: int = DEFAULT_BUCKETS) -> list[tuple[int, int]]:
    """`count` position ranges over [0, positions) of near-equal width. When the window runs past the
    trained context, one edge falls exactly at it, so each bucket is wholly inside or wholly past."""
    if positions <= 0:
        return []
    count = max(1, min(count, positions))
    if positions <= trained or count == 1:
        return _split(0, positions, count)
    inside = min(max(round(count * trained / positions), 1), count - 1)
    return _split(0, trained, inside) + _split(trained, positions, count - inside)


def _split(start: int, end: int, count: int) -> list[tuple[int, int]]:
    count = max(1, min(count, end - start))
    edges = [start + (end - start) * i // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def perplexity(nll_sum: float, tokens: int) -> float | None:
    if tokens <= 0:
        return None
    mean = nll_sum / tokens
    return math.exp(mean) if mean < 700 else float("inf")


def summarize(losses, trained: int, buckets: int = DEFAULT_BUCKETS) -> dict:
    """Perplexities of one window: overall, inside the trained range (query positions < L0), in the
    second half of it (L0/2 ≤ t < L0: the verdict's reference), past it (≥ L0), the last quarter of
    positions, and per position bucket. Every average is the mean
    per-token loss (nats) over the tokens it covers; perplexity is its exponential."""
    values = [float(v) for v in losses.tolist()] if hasattr(losses, "tolist") else list(losses)
    prefix = [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
    count = len(values)

    def ppl(start: int, end: int) -> float | None:
        start, end = max(0, start), min(count, end)
        return perplexity(prefix[end] - prefix[start], end - start) if end > start else None

    rows = []
    for start, end in bucket_edges(count, trained, buckets):
        region = "inside" if end <= trained else "beyond" if start >= trained else "mixed"
        rows.append({"start": start, "end": end, "tokens": end - start, "region": region,
                     "mean_nll": (prefix[end] - prefix[start]) / (end - start), "ppl": ppl(start, end)})
    quarter = count - count // 4
    return {
        "positions": count,
        "ppl": ppl(0, count),
        "ppl_inside": ppl(0, min(trained, count)),
        "ppl_inside_second_half": ppl(trained // 2, min(trained, count)),
        "ppl_beyond": ppl(trained, count) if count > trained else None,
        "ppl_last_quarter": ppl(quarter, count),
        "mean_nll": prefix[count] / count if count else None,
        "buckets": rows,
    }


# ---- errors --------------------------------------------------------------------------------------

def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError))


def out_of_memory_error(what: str, device: str) -> RopeconvError:
    return ProbeOptionError("lengths", f"out of memory while {what} on {device}",
                            "lower {name}, or use a bigger device ({name:device} cuda with more GPU memory)")


def release_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    elif device == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
