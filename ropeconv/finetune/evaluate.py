"""Evaluation before and after training, with the probe's own measurement (`token_losses`, `summarize`)
on a held-out text: perplexity by position for the unscaled model, the training-free extension and the
fine-tuned model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ropeconv.probe.measure import release_memory, summarize, token_losses


@dataclass(frozen=True)
class EvalText:
    ids: list[int]
    description: dict  # the probe's Text.describe(): source, name, sha256, …
    trained: int  # L0: where "past L0" starts


def eval_text(tokenizer, path: Path | None, length: int, trained: int) -> EvalText:
    from ropeconv.probe.text import load_text, token_fingerprint, tokenize

    text = load_text(path)
    ids = tokenize(tokenizer, text, length)
    return EvalText(ids, {**text.describe(), "tokens": length, "token_sha256": token_fingerprint(ids)}, trained)


def measure(model, text: EvalText) -> dict:
    """The probe's summary of one window (ppl overall, inside L0, past L0, per bucket)."""
    return summarize(token_losses(model, text.ids), text.trained)


def measure_folder(folder: Path, text: EvalText, device: str, dtype) -> dict:
    from ropeconv.probe.measure import load_model

    model = load_model(folder, device, dtype)
    try:
        return measure(model, text)
    finally:
        del model
        release_memory(device)
