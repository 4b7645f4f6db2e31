"""Probing a model's long-context behaviour: perplexity by position (and optional passkey retrieval),
optionally against the model it was made from, with a pass/fail verdict.

`run_probe(...)` is the library entry point (the `probe` command and `extend --probe` call it).
This module imports only light things: torch and transformers load inside the functions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ropeconv.errors import RopeconvError
from ropeconv.plan import parse_tokens
from ropeconv.probe.verdict import Thresholds, judge

RESULT_NAME = "probe.json"
RECORD_NAME = "ropeconv.json"  # marks a ropeconv output folder (written by extend)
SHORT_LENGTH = 4096
MIN_LENGTH = 16

__all__ = ["run_probe", "parse_lengths", "default_lengths", "Thresholds", "RESULT_NAME"]


# ---- lengths -------------------------------------------------------------------------------------

def parse_length(item: str) -> int:
    """'4k' -> 4096, '16K' -> 16384, '32768' -> 32768, '1.5k' -> 1536."""
    value = parse_tokens(item)
    if value is None or value < MIN_LENGTH:
        raise RopeconvError(f"{str(item).strip()!r} is not a length in tokens (at least {MIN_LENGTH})",
                            "use numbers like 4k, 16k or 32768, separated by commas")
    return value


def parse_lengths(value: str | int | list | tuple) -> list[int]:
    """'4k,16k,32768' (or a list of such) -> sorted unique token counts."""
    items = value.split(",") if isinstance(value, str) else [value] if isinstance(value, int) else list(value)
    items = [i for i in items if str(i).strip()]
    if not items:
        raise RopeconvError("no lengths given", "e.g. --lengths 4k,16k,32k")
    return sorted({parse_length(i) for i in items})


def default_lengths(trained: int, served: int, quick: bool = False) -> list[int]:
    """Without --lengths: one length inside the trained context (for short-context retention) and
    lengths past it. --quick: L0 × 1.5, the shortest window where running past the trained context
    shows reliably (SmolLM2 unscaled is still level at 1.25 × L0 and 4× worse by 1.5 × L0).
    Otherwise 2 × L0 and the served context (2 × L0 alone for a model that claims nothing beyond L0)."""
    short = min(SHORT_LENGTH, trained)
    if quick:
        return sorted({short, trained + max(trained // 2, MIN_LENGTH)})
    return sorted({short, 2 * trained, max(served, 2 * trained)})


# ---- the probe -----------------------------------------------------------------------------------

def run_probe(model: str | Path, against: str | Path | None = None, lengths: str | list[int] | None = None,
              quick: bool = False, passkey: bool = False, device: str = "auto", dtype: str = "auto",
              text: str | Path | None = None, dataset: str | None = None, thresholds: Thresholds | None = None,
              original_context: int | None = None, depths: str | list[float] | None = None,
              buckets: int = 8, chunk: int = 1024, save: bool = True, progress: bool = True) -> dict:
    """Measure MODEL (and BASE, when `against` is given) at each length and judge the result.

    Returns a JSON-able dict; `result["verdict"]["status"]` is "pass", "fail" or "inconclusive".
    When MODEL is a ropeconv output folder (it holds ropeconv.json) and `save`, the result is also
    written there as probe.json (atomically).
    """
    from ropeconv.probe import measure, text as texts

    started = time.perf_counter()
    thresholds = thresholds or Thresholds()
    if buckets < 1 or chunk < 1:
        raise RopeconvError("buckets and chunk must be positive", "e.g. 8 buckets, chunks of 1024 positions")
    target = _describe(model, original_context)
    base = _describe(against, original_context) if against is not None else None
    trained = target["original_context"]
    wanted = parse_lengths(lengths) if lengths is not None else default_lengths(trained, target["served_context"], quick)
    depth_list = None
    if passkey:
        from ropeconv.probe.passkey import parse_depths

        depth_list = parse_depths(depths)
    source_text = texts.load_text(text, dataset, min_tokens=max(wanted))
    device_name = measure.pick_device(device)
    torch_dtype = measure.pick_dtype(device_name, dtype)
    reporter = _Reporter(progress)

    runs = [{"length": n} for n in wanted]
    token_info: dict[str, Any] = {}
    warnings: list[str] = []
    passkey_result = None
    for role, info in (("against", base), ("model", target)):
        if info is None:
            continue
        label = f"{'before' if role == 'against' else 'after' if base else 'model'}: {info['label']}"
        tokenizer = _load_tokenizer(info["path"])
        ids = texts.tokenize(tokenizer, source_text, max(wanted))
        token_info[role] = texts.token_fingerprint(ids)
        with reporter.task(f"loading {label}", None):
            loaded = measure.load_model(info["path"], device_name, torch_dtype)
        try:
            for run in runs:
                n = run["length"]
                window = ids[:n]
                t0 = time.perf_counter()
                with reporter.task(f"{label} · {n} tokens", measure.steps_for(loaded, n, chunk)) as advance:
                    losses = _guarded(lambda: measure.token_losses(loaded, window, chunk=chunk, advance=advance),
                                      f"measuring {n} tokens", device_name)
                summary = measure.summarize(losses, trained, buckets)
                summary["seconds"] = round(time.perf_counter() - t0, 2)
                run[role] = summary
                reporter.note(f"{label} at {n} tokens: perplexity {_fmt(summary['ppl'])}"
                              f" ({summary['seconds']:.0f} s)")
            if role == "model" and passkey:
                from ropeconv.probe.passkey import run_passkey

                with reporter.task(f"{label} · passkey", len(wanted) * len(depth_list)) as advance:
                    passkey_result = _guarded(lambda: run_passkey(loaded, tokenizer, wanted, depth_list, advance),
                                              "running the passkey test", device_name)
        finally:
            loaded = None  # drop the weights before the next model loads
            measure.release_memory(device_name)
    if base is not None and token_info.get("against") != token_info.get("model"):
        warnings.append("MODEL and BASE tokenize the text differently: their perplexities are not directly comparable")

    verdict = judge(runs, trained, thresholds, passkey_result)
    result = {
        "model": target["record"],
        "against": base["record"] if base else None,
        "device": device_name,
        "dtype": str(torch_dtype).replace("torch.", ""),
        "text": {**source_text.describe(), "tokens_sha256": token_info.get("model")},
        "method": _method_note(trained, buckets, chunk),
        "lengths": wanted,
        "trained_context": trained,
        "results": runs,
        "passkey": passkey_result,
        "thresholds": thresholds.to_dict(),
        "verdict": verdict,
        "warnings": warnings,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if base is None and verdict["status"] != "fail":
        source = target.get("recorded_source") or "SOURCE"
        result["hint"] = (f"without --against only the level past L0 is judged; a conversion worse everywhere "
                          f"than its source also passes it: compare with --against {source}")
    if save and target["is_ropeconv_output"]:
        result["saved"] = _save(Path(target["path"]) / RESULT_NAME, result, warnings)
    return result


def _describe(model: str | Path, original_context: int | None) -> dict:
    """Where MODEL is, what its config says about RoPE, and how to name it in output."""
    from ropeconv.source import read_config, resolve
    from ropeconv.spec import read_spec

    source = resolve(str(model), need="weights")
    if source.kind == "gguf":
        raise RopeconvError(f"{model} is a GGUF file; the probe runs Hugging Face models",
                            "probe the safetensors folder it came from (or the one `ropeconv extend` wrote)")
    folder = Path(source.path)
    config = read_config(folder)
    spec = read_spec(config, original_context)
    record_path = folder / RECORD_NAME
    recorded = _recorded_source(record_path)
    label = source.repo_id or folder.name or str(folder)
    return {
        "path": folder, "label": label, "original_context": spec.original_context,
        "served_context": spec.served_context(),
        # Only local folders get probe.json: a Hub repo's files live in the shared download cache.
        "is_ropeconv_output": source.kind == "local" and record_path.is_file(),
        "recorded_source": recorded,
        "record": {**source.to_dict(), "rope_type": spec.rope_type, "factor": spec.factor,
                   "original_context": spec.original_context, "served_context": spec.served_context()},
    }


def _recorded_source(record_path: Path) -> str | None:
    """The local source folder an earlier `ropeconv extend` recorded, when it still exists."""
    from ropeconv.source import read_json_object

    source = (read_json_object(record_path) or {}).get("source")
    if not isinstance(source, dict):
        return None
    path = source.get("repo_id") or source.get("path")
    if not isinstance(path, str):
        return None
    return path if source.get("repo_id") or Path(path).is_dir() else None


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    from ropeconv.probe.measure import first_line, quiet_transformers

    with quiet_transformers():
        try:
            return AutoTokenizer.from_pretrained(path)
        except Exception as exc:  # the loader's errors vary; the user gets one line
            raise RopeconvError(f"cannot load the tokenizer of {path}: {first_line(exc)}",
                                "the model folder needs its tokenizer files (tokenizer.json or similar)") from None


def _guarded(body, what: str, device: str):
    """Run a measurement; an out-of-memory becomes a one-line error with what to change."""
    from ropeconv.probe import measure

    try:
        return body()
    except RopeconvError:
        raise
    except (RuntimeError, MemoryError) as exc:
        if measure.is_out_of_memory(exc):
            raise measure.out_of_memory_error(what, device) from None
        raise


def _method_note(trained: int, buckets: int, chunk: int) -> dict:
    return {
        "protocol": "one forward pass over the first L tokens of the text per length (YaRN paper protocol; "
                    "no sliding window); the tokenizer's usual special tokens included",
        "loss": f"negative log-likelihood (nats) of token t+1 given tokens 0..t, in float32, from the LM head "
                f"applied to the final hidden states in chunks of {chunk} positions",
        "average": "token-weighted mean of the per-token loss over the positions covered; perplexity = exp(mean)",
        "positions": f"query position t, 0-based; 'inside' = t < {trained} (L0), 'beyond' = t ≥ {trained}",
        "buckets": f"{buckets} near-equal position ranges, one edge at L0 when the window passes it",
        "reference": "past-L0 buckets are judged against the second half of the trained window "
                     f"(positions {trained // 2}–{trained})",
        "last_quarter": "the last quarter of the query positions",
    }


def _save(path: Path, result: dict, warnings: list[str]) -> str | None:
    from ropeconv.output import write_json_atomic

    try:
        write_json_atomic(path, result)
    except RopeconvError as exc:
        warnings.append(f"could not save {path.name}: {exc.line()}")
        return None
    return str(path)


def _fmt(value: float | None) -> str:
    from ropeconv.probe.verdict import _f

    return _f(value)


class _Reporter:
    """Progress bars and one-line notes on stderr; silent when disabled (--json, library use)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def task(self, description: str, total: int | None):
        import sys

        from ropeconv.cli.common import progress

        # Bars only on a terminal: redirected stderr gets the one-line notes alone.
        return progress(description, total, enabled=self.enabled and sys.stderr.isatty())

    def note(self, line: str) -> None:
        if self.enabled:
            from ropeconv.cli.common import console

            console(stderr=True).print(line, markup=False)
