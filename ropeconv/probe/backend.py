"""What the probe measures with: a small typed backend per engine, chosen from what MODEL is.

One measuring loop (`ropeconv.probe.run_probe`) drives either backend through the same calls:
`tokenizer`, `load`, `token_losses`, `steps_for`, `flops_per_token`, `synchronize`, `release`,
and `engine_report` (what the engine said about what it loaded). `TransformersBackend` runs a
Hugging Face folder (`measure.py`); `LlamaCppBackend` runs a GGUF file in llama.cpp itself
(`llamacpp.py`, the `llamacpp` extra). `describe_gguf` is the GGUF's side of `_describe`: what
its metadata says about RoPE, read by ropeconv's own GGUF reader (no llama.cpp needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ropeconv.errors import RopeconvError

TRANSFORMERS = "transformers"
LLAMA_CPP = "llama.cpp"


class Backend:
    """The engine a probe measures with. Subclasses implement every method."""

    name: str = ""
    device: str = "cpu"

    def loss_note(self, chunk: int) -> str:
        """The result's `method.loss`: where this engine's per-token losses come from."""
        raise NotImplementedError

    def tokenizer(self, path: Path) -> Any:
        """Something called like a transformers tokenizer: `tok(text, add_special_tokens=True)["input_ids"]`."""
        raise NotImplementedError

    def vocab_size(self, tokenizer: Any, described: int | None) -> int | None:
        return described

    def load(self, path: Path) -> Any:
        raise NotImplementedError

    def token_losses(self, loaded: Any, ids: list[int], chunk: int,
                     advance: Callable[[int], None] | None = None):
        raise NotImplementedError

    def steps_for(self, loaded: Any, length: int, chunk: int) -> int:
        raise NotImplementedError

    def flops_per_token(self, loaded: Any) -> tuple[float, float]:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (a warm-up timed without it would measure only the launch)."""

    def greedy_answer(self, loaded: Any, tokenizer: Any, ids: list[int]) -> str:
        """The passkey's answer: greedy continuation of `ids` (passkey.ANSWER_TOKENS tokens at most), as text."""
        raise NotImplementedError

    def release(self) -> None:
        """Free what the last model held before the next one loads."""

    def engine_report(self, loaded: Any) -> dict | None:
        """What the engine said about the loaded model (llama.cpp: its build and the RoPE arguments it runs)."""
        return None


@dataclass
class TransformersBackend(Backend):
    device: str = "cpu"
    torch_dtype: Any = None
    name: str = TRANSFORMERS

    def loss_note(self, chunk: int) -> str:
        return f"the LM head applied to the final hidden states in chunks of {chunk} positions, in float32"

    def tokenizer(self, path: Path) -> Any:
        from ropeconv.probe.measure import load_tokenizer

        return load_tokenizer(path)

    def load(self, path: Path) -> Any:
        from ropeconv.probe import measure  # noqa: the module, not the package

        return measure.load_model(path, self.device, self.torch_dtype)

    def token_losses(self, loaded, ids, chunk, advance=None):
        from ropeconv.probe import measure  # noqa: the module, not the package

        return measure.token_losses(loaded, ids, chunk=chunk, advance=advance)

    def steps_for(self, loaded, length, chunk):
        from ropeconv.probe import measure  # noqa: the module, not the package

        return measure.steps_for(loaded, length, chunk)

    def flops_per_token(self, loaded):
        from ropeconv.probe import measure  # noqa: the module, not the package

        return measure.flops_per_token(loaded)

    def greedy_answer(self, loaded, tokenizer, ids):
        from ropeconv.probe.passkey import greedy_answer

        return greedy_answer(loaded, tokenizer, ids)

    def synchronize(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def release(self) -> None:
        from ropeconv.probe import measure  # noqa: the module, not the package

        measure.release_memory(self.device)


@dataclass
class LlamaCppBackend(Backend):
    """A GGUF in llama.cpp, loaded with a context of `n_ctx` tokens (the longest window measured, and room
    for a passkey's answer)."""

    n_ctx: int = 0
    device: str = "cpu"
    name: str = LLAMA_CPP

    def loss_note(self, chunk: int) -> str:
        from ropeconv.probe import llamacpp

        return (f"llama.cpp's logits (llama_decode, {llamacpp.BATCH} positions per batch), log-softmax with "
                "float64 sums; the text tokenized by the GGUF's own tokenizer")

    def tokenizer(self, path: Path) -> Any:
        from ropeconv.probe import llamacpp

        return llamacpp.GgufTokenizer(path)

    def vocab_size(self, tokenizer: Any, described: int | None) -> int | None:
        return tokenizer.vocab_size

    def load(self, path: Path) -> Any:
        from ropeconv.probe import llamacpp

        return llamacpp.load(path, self.n_ctx)

    def token_losses(self, loaded, ids, chunk, advance=None):
        from ropeconv.probe import llamacpp

        return llamacpp.token_losses(loaded, ids, advance=advance)

    def steps_for(self, loaded, length, chunk):
        from ropeconv.probe import llamacpp

        return llamacpp.steps_for(length)

    def flops_per_token(self, loaded):
        from ropeconv.probe import llamacpp

        return llamacpp.flops_per_token(loaded)

    def greedy_answer(self, loaded, tokenizer, ids):
        from ropeconv.probe import llamacpp
        from ropeconv.probe.passkey import ANSWER_TOKENS

        return llamacpp.detokenize(loaded, llamacpp.greedy_tokens(loaded, ids, ANSWER_TOKENS))

    def release(self) -> None:
        import gc

        gc.collect()  # the Llama object frees its context and weights when collected

    def engine_report(self, loaded) -> dict:
        return {"build": loaded.build, "rope": loaded.rope.to_dict()}


def is_gguf(model: str | Path) -> bool:
    """MODEL names a GGUF file (as `ropeconv.source.resolve` decides it)."""
    path = Path(str(model)).expanduser()
    return path.suffix == ".gguf" and path.is_file()


def check_same_kind(target_is_gguf: bool, base_is_gguf: bool | None) -> None:
    """MODEL and BASE must be the same kind: a GGUF measured in llama.cpp and a folder in transformers
    differ by more than their RoPE (quantization, kernels), so their perplexities do not compare."""
    if base_is_gguf is not None and base_is_gguf != target_is_gguf:
        gguf, folder = ("MODEL", "BASE") if target_is_gguf else ("BASE", "MODEL")
        raise RopeconvError(f"{gguf} is a GGUF file and {folder} a Hugging Face model: the probe compares two "
                            "models in one engine", "pass two GGUF files (llama.cpp) or two folders (transformers)")


def pick_backend(target_is_gguf: bool, device: str, dtype: str, n_ctx: int) -> tuple[Backend, Any]:
    """(backend, measure.DtypeChoice): llama.cpp for a GGUF file, transformers for a folder."""
    from ropeconv.probe import measure  # noqa: the module, not the package
    from ropeconv.probe.options import ProbeOptionError

    if not target_is_gguf:
        device_name = measure.pick_device(device)
        choice = measure.dtype_choice(device_name, dtype)
        return TransformersBackend(device=device_name, torch_dtype=measure.pick_dtype(device_name, choice.dtype)), choice
    if device not in ("auto", "cpu"):
        raise ProbeOptionError("device", f"{{name}} {device} applies to Hugging Face models; this llama.cpp build "
                                         "runs GGUF files on the CPU", "leave {name} out (or use cpu) for a GGUF")
    if dtype != "auto":
        raise ProbeOptionError("dtype", f"{{name}} {dtype} applies to Hugging Face models; llama.cpp computes a "
                                        "GGUF in its own tensor types", "leave {name} out for a GGUF")
    from ropeconv.probe import llamacpp

    llamacpp.require()  # before any progress line: the extra compiles llama.cpp, so say how to get it
    choice = measure.DtypeChoice("gguf", "llama.cpp computes in the file's own tensor types")
    return LlamaCppBackend(n_ctx=n_ctx), choice


def describe_gguf(model: str | Path, original_context: int | None) -> dict:
    """`_describe` for a GGUF file: where it is, what its metadata says about RoPE (L0 from
    --original-context, else the file's ropeconv record, else its own keys), how to name it."""
    from ropeconv.gguf_io import open_gguf, spec_from_metadata
    from ropeconv.record import gguf_base, gguf_record
    from ropeconv.source import resolve

    source = resolve(str(model), need="weights")
    info = open_gguf(source.path)
    base = gguf_base(info.kv)
    L0 = original_context if original_context is not None else (base.original_context if base else None)
    spec = spec_from_metadata(info.arch, info.kv, info.rope_tensors, original_context=L0)
    path = Path(source.path)
    return {
        "path": path, "label": path.name, "original_context": spec.original_context,
        "vocab_size": None,  # the GGUF's own tokenizer makes its ids: they fit its vocabulary
        "served_context": spec.served_context(),
        # a ropeconv output (it carries ropeconv.* keys) gets FILE.gguf.probe.json beside it
        "is_ropeconv_output": gguf_record(info.kv) is not None,
        "recorded_source": None,
        "record": {**source.to_dict(), "rope_type": spec.rope_type, "factor": spec.factor,
                   "original_context": spec.original_context, "served_context": spec.served_context(),
                   "architecture": info.arch},
    }


def result_path(described: dict, folder_name: str) -> Path:
    """Where a probe result is saved: `probe.json` inside a folder, `FILE.gguf.probe.json` beside a GGUF."""
    path = Path(described["path"])
    return path.with_name(path.name + "." + folder_name) if path.suffix == ".gguf" else path / folder_name
