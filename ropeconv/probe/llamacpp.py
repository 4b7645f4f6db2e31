"""The probe's llama.cpp backend: a GGUF file measured by llama.cpp itself, through llama-cpp-python
(the `llamacpp` extra, which compiles llama.cpp on install).

The same protocol as the transformers backend (`measure.py`): one pass over the first L tokens of the
text, the negative log-likelihood of each token given all before it, read from llama.cpp's logits one
batch at a time (never L × vocabulary of them in memory); the text is tokenized by the GGUF's own
tokenizer. What llama.cpp made of the file's RoPE — scaling type, θ, frequency scale, YaRN's original
context — is read from llama.cpp's own log of the load, so a result says what ran, not what the file
meant.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ropeconv.errors import RopeconvError

BATCH = 512
INSTALL_FIX = ('pip install "ropeconv[llamacpp]" (it compiles llama.cpp from source: '
               "about 20 minutes on 2 cores), or probe the Hugging Face folder instead")


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def require() -> None:
    """llama-cpp-python importable, or one line saying how to get it (checked before any progress line)."""
    if not available():
        raise RopeconvError("probing a GGUF file runs llama.cpp itself, and llama-cpp-python is not installed",
                            INSTALL_FIX)
    try:
        import llama_cpp  # noqa: F401  (loads llama.cpp's shared library)
    except (ImportError, OSError) as exc:  # e.g. installed with --no-deps: its diskcache dependency missing
        raise RopeconvError(f"llama-cpp-python is installed but cannot be imported: {exc}",
                            'reinstall it with its dependencies: pip install --force-reinstall "ropeconv[llamacpp]"'
                            ) from None


@dataclass(frozen=True)
class RopeArgs:
    """The RoPE arguments llama.cpp runs with, as its log of the load states them (None: not logged)."""

    scaling: str | None  # "none", "linear", "yarn", "longrope"
    freq_base_train: float | None  # θ from the file
    freq_scale_train: float | None  # 1/s from the file
    n_ctx_train: int | None  # the file's context_length
    n_ctx_orig_yarn: int | None  # YaRN's original context (L0)
    yarn_log_mul: float | None
    n_ctx: int | None  # the context it was loaded with
    freq_base: float | None  # θ passed to ggml_rope_ext
    freq_scale: float | None  # freq_scale passed to ggml_rope_ext
    n_tensors: int | None = None  # tensors the file holds; llama.cpp refuses a file with one it does not use
    # the scaling type the context runs with when the caller overrode the file's (--rope-scaling):
    # llama.cpp logs only the file's (print_info), so this one is what was passed
    scaling_override: str | None = None

    @property
    def runtime_scaling(self) -> str | None:
        return self.scaling_override or self.scaling

    @property
    def ext_factor(self) -> float:
        """YaRN's ramp mix: llama.cpp sets 1 for yarn and 0 otherwise when the caller sets none (llama-context.cpp)."""
        return 1.0 if self.runtime_scaling == "yarn" else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "runtime_scaling": self.runtime_scaling, "ext_factor": self.ext_factor}


_LOG_FIELDS = {  # (log prefix, key) -> (field, type); the last value logged wins
    ("print_info", "rope scaling"): ("scaling", str),
    ("print_info", "freq_base_train"): ("freq_base_train", float),
    ("print_info", "freq_scale_train"): ("freq_scale_train", float),
    ("print_info", "n_ctx_train"): ("n_ctx_train", int),
    ("print_info", "n_ctx_orig_yarn"): ("n_ctx_orig_yarn", int),
    ("print_info", "rope_yarn_log_mul"): ("yarn_log_mul", float),
    ("llama_context", "n_ctx"): ("n_ctx", int),
    ("llama_context", "freq_base"): ("freq_base", float),
    ("llama_context", "freq_scale"): ("freq_scale", float),
}
_LOG_LINE = re.compile(r"^(?P<where>\w+): (?P<key>[\w ]+?)\s*= (?P<value>\S+)\s*$")
_TENSORS_LINE = re.compile(r"^llama_model_loader: loaded meta data with \d+ key-value pairs and (\d+) tensors")


def parse_rope_log(log: str) -> RopeArgs:
    """The RoPE arguments in llama.cpp's log of one model load (print_info and llama_context lines)."""
    found: dict[str, Any] = {}
    for line in log.splitlines():
        tensors = _TENSORS_LINE.match(line.strip())
        if tensors:
            found["n_tensors"] = int(tensors.group(1))
        match = _LOG_LINE.match(line.strip())
        field = match and _LOG_FIELDS.get((match["where"], match["key"].strip()))
        if field:
            name, kind = field
            try:
                found[name] = kind(match["value"])
            except ValueError:
                continue
    return RopeArgs(**{name: found.get(name) for name in RopeArgs.__dataclass_fields__})


class _LogCapture:
    """llama.cpp's log routed into a string while a model loads (its C callback, kept alive here)."""

    def __init__(self):
        import llama_cpp

        self.parts: list[str] = []
        self._llama_cpp = llama_cpp
        self._callback = llama_cpp.llama_log_callback(self._log)

    def _log(self, level: int, text: bytes, user_data) -> None:
        self.parts.append(text.decode("utf-8", errors="replace"))

    def __enter__(self) -> "_LogCapture":
        self._llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc) -> None:
        from llama_cpp import _logger

        self._llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass
class LoadedGguf:
    """A GGUF loaded in llama.cpp for measuring, with what llama.cpp said about its RoPE."""

    llm: Any
    path: Path
    rope: RopeArgs
    build: str  # which llama.cpp ran it


def threads() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count: more threads than
    cores makes llama.cpp's workers wait on each other), at most 16."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        usable = os.cpu_count() or 1
    return max(1, min(usable, 16))


def build_info() -> str:
    import llama_cpp

    system = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    # "CPU : SSE3 = 1 | AVX = 1 | … |" → "SSE3 AVX …": the features this build uses
    features = " ".join(part.split("=")[0].split(":")[-1].strip() for part in system.split("|")
                        if part.strip().endswith("= 1"))
    return f"llama-cpp-python {llama_cpp.__version__} (llama.cpp with {features})"


def load(path: Path, n_ctx: int, *, rope_overrides: dict | None = None) -> LoadedGguf:
    """The GGUF in llama.cpp with a context of `n_ctx` tokens (0: the file's own context_length).

    `rope_overrides` are llama.cpp's runtime RoPE flags as `Llama` keyword arguments (rope_scaling_type,
    rope_freq_base, rope_freq_scale, yarn_orig_ctx, …): the override launch lines' equivalent."""
    require()
    import llama_cpp

    with _LogCapture() as log:
        try:
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=BATCH, n_ubatch=BATCH,
                                  n_threads=threads(), n_threads_batch=threads(), logits_all=False,
                                  verbose=False, **(rope_overrides or {}))
        except (ValueError, RuntimeError) as exc:
            last = [line for line in log.text.splitlines() if line.strip()][-1:] or [str(exc)]
            raise RopeconvError(f"llama.cpp could not load {path.name}: {last[0].strip()}",
                                "check that the file is a complete GGUF of a model llama.cpp supports") from None
    rope = parse_rope_log(log.text)
    scaling = (rope_overrides or {}).get("rope_scaling_type")
    if scaling is not None and scaling >= 0:  # -1: unspecified, the file's own
        rope = replace(rope, scaling_override=_SCALING_NAMES.get(scaling, str(scaling)))
    return LoadedGguf(llm=llm, path=path, rope=rope, build=build_info())


# llama.cpp's enum llama_rope_scaling_type, as its log spells the types
_SCALING_NAMES = {0: "none", 1: "linear", 2: "yarn", 3: "longrope"}


def override_kwargs(argv: list[str]) -> dict:
    """llama.cpp's runtime RoPE flags in a launch line (llama-server/llama-cli argv, common/arg.cpp's
    spelling) as `load(..., rope_overrides=…)`: --rope-scaling {none,linear,yarn}, --rope-scale N (frequency
    scale 1/N), --rope-freq-scale, --rope-freq-base, --yarn-orig-ctx. Other flags (-m, -c) are not RoPE's."""
    kinds = {name: number for number, name in _SCALING_NAMES.items()}
    flags: dict[str, Callable[[str], tuple[str, Any]]] = {
        "--rope-scaling": lambda v: ("rope_scaling_type", kinds[v]),
        "--rope-scale": lambda v: ("rope_freq_scale", 1.0 / float(v)),
        "--rope-freq-scale": lambda v: ("rope_freq_scale", float(v)),
        "--rope-freq-base": lambda v: ("rope_freq_base", float(v)),
        "--yarn-orig-ctx": lambda v: ("yarn_orig_ctx", int(v)),
    }
    out: dict[str, Any] = {}
    for flag, value in zip(argv, argv[1:]):
        if flag in flags:
            try:
                key, converted = flags[flag](value)
            except (KeyError, ValueError, ZeroDivisionError):
                raise RopeconvError(f"{flag} {value!r} is not a value llama.cpp takes",
                                    "see llama.cpp's --help for the flag's values") from None
            out[key] = converted
    return out


class GgufTokenizer:
    """The GGUF's own tokenizer, called like a transformers tokenizer (`tokenizer(text)["input_ids"]`),
    so the probe's text code tokenizes for either backend."""

    def __init__(self, path: Path):
        require()
        import llama_cpp

        with _LogCapture():
            try:
                self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, vocab_only=True, verbose=False)
            except (ValueError, RuntimeError):
                raise RopeconvError(f"llama.cpp could not read the tokenizer of {path.name}",
                                    "check that the file is a complete GGUF of a model llama.cpp supports") from None

    def __call__(self, text: str, add_special_tokens: bool = True, verbose: bool = False) -> dict:
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=False)
        return {"input_ids": list(ids)}

    @property
    def vocab_size(self) -> int:
        return int(self._llm.n_vocab())


def token_losses(model: LoadedGguf, ids: list[int], *, batch: int = BATCH,
                 advance: Callable[[int], None] | None = None) -> list[float]:
    """Negative log-likelihood (nats) of token t+1 given tokens 0..t for every position of one window:
    `len(ids) - 1` values, as `measure.token_losses` gives them. One llama_decode per batch; each batch's
    logits are reduced at once. `advance(1)` after each batch."""
    import numpy as np

    losses: list[float] = []
    with _Decoder(model, len(ids), batch) as decoder:
        for start in range(0, len(ids) - 1, batch):
            chunk = ids[start:min(start + batch, len(ids) - 1)]
            logits = decoder.decode(chunk, start, every_logit=True)
            # log-softmax with float64 sums over float32 exponentials: as exact as all-float64 (≈1e-8 nats)
            # at a twentieth of its time (a float64 copy of 512 × 49k logits alone is 200 MB)
            top = logits.max(axis=1).astype(np.float64)
            log_z = top + np.log(np.exp(logits - top[:, None].astype(np.float32)).sum(axis=1, dtype=np.float64))
            targets = np.asarray(ids[start + 1:start + 1 + len(chunk)])
            losses.extend((log_z - logits[np.arange(len(chunk)), targets].astype(np.float64)).tolist())
            if advance:
                advance(1)
    return losses


def greedy_tokens(model: LoadedGguf, ids: list[int], max_new: int, *, batch: int = BATCH) -> list[int]:
    """Greedy decoding (the most likely token each step, as transformers' do_sample=False) of up to
    `max_new` tokens after `ids`, stopping at an end-of-generation token."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(model.llm.model)
    out: list[int] = []
    with _Decoder(model, len(ids) + max_new, batch) as decoder:
        for start in range(0, len(ids), batch):
            logits = decoder.decode(ids[start:start + batch], start, every_logit=False)
        position = len(ids)
        while len(out) < max_new:
            token = int(logits[-1].argmax())
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            out.append(token)
            logits = decoder.decode([token], position, every_logit=False)
            position += 1
    return out


def detokenize(model: LoadedGguf, tokens: list[int]) -> str:
    return model.llm.detokenize(tokens, special=False).decode("utf-8", errors="replace")


class _Decoder:
    """llama_decode over one sequence from position 0 (the context's memory cleared first), a batch at a time."""

    def __init__(self, model: LoadedGguf, positions: int, batch: int):
        if positions > model.llm.n_ctx():
            raise RopeconvError(f"{positions} tokens do not fit the {model.llm.n_ctx()}-token context "
                                f"{model.path.name} was loaded with",
                                "load it with a larger context (a bug: please report it)")
        self.model, self.batch = model, batch
        self.ctx = model.llm._ctx.ctx
        self.n_vocab = model.llm.n_vocab()

    def __enter__(self) -> "_Decoder":
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        self.raw = llama_cpp.llama_batch_init(self.batch, 0, 1)
        return self

    def __exit__(self, *exc) -> None:
        import llama_cpp

        llama_cpp.llama_batch_free(self.raw)

    def decode(self, tokens: list[int], start: int, every_logit: bool):
        """Evaluate `tokens` at positions start…; the logits (a view, valid until the next decode) of every
        token, or of the last one only."""
        import llama_cpp
        import numpy as np

        raw = self.raw
        raw.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            raw.token[i], raw.pos[i], raw.n_seq_id[i] = token, start + i, 1
            raw.logits[i] = every_logit or i == len(tokens) - 1
            raw.seq_id[i][0] = 0
        if llama_cpp.llama_decode(self.ctx, raw) != 0:
            raise RopeconvError(f"llama.cpp could not evaluate {self.model.path.name} at position {start}",
                                "probe a shorter length, or check the file with llama.cpp's own tools")
        rows = len(tokens) if every_logit else 1
        pointer = ctypes.cast(llama_cpp.llama_get_logits(self.ctx), ctypes.POINTER(ctypes.c_float))
        return np.ctypeslib.as_array(pointer, shape=(rows, self.n_vocab))


def flops_per_token(model: LoadedGguf) -> tuple[float, float]:
    """`measure.flops_per_token` from llama.cpp's own counts: 2 per weight (embeddings included: a small
    overcount next to the decoder and head), and causal attention's 2·layers·heads·head_dim per token²."""
    import llama_cpp

    weights = float(llama_cpp.llama_model_n_params(model.llm.model))
    layers = llama_cpp.llama_model_n_layer(model.llm.model)
    heads = max(1, llama_cpp.llama_model_n_head(model.llm.model))
    head_dim = llama_cpp.llama_model_n_embd(model.llm.model) // heads
    return 2.0 * weights, 2.0 * layers * heads * head_dim


def steps_for(length: int, batch: int = BATCH) -> int:
    """How many times token_losses calls advance() for a window of `length` tokens."""
    return max(1, math.ceil((length - 1) / batch))
