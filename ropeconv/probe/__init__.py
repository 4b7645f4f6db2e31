"""Probing a model's long-context behaviour: perplexity by position (and optional passkey retrieval),
optionally against the model it was made from, with a pass/fail verdict.

`run_probe(...)` is the library entry point (the `probe` command and `extend --probe` call it).
This module imports only light things: torch and transformers load inside the functions.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ropeconv.errors import RopeconvError
from ropeconv.numbers import parse_tokens, show, token_problem
from ropeconv.probe.measure import load_tokenizer
from ropeconv.probe.options import ProbeOptionError
from ropeconv.probe.progress import (LONG_ESTIMATE_SECONDS, Estimate, ProbeReporter, ProbeStep, TextReporter,
                                     shorten_hint, window_cost)
from ropeconv.probe.verdict import Thresholds, judge, source_checks
from ropeconv.redact import redact_json

RESULT_NAME = "probe.json"
SHORT_LENGTH = 4096
MIN_LENGTH = 16

if TYPE_CHECKING:
    from ropeconv.probe.backend import Backend

__all__ = ["run_probe", "parse_lengths", "default_lengths", "Thresholds", "RESULT_NAME", "ProbeReporter",
           "TextReporter", "ProbeStep", "Estimate", "ProbeOptionError", "load_tokenizer", "guarded"]


# ---- lengths -------------------------------------------------------------------------------------

def parse_length(item: str) -> int:
    """'4k' -> 4096, '16K' -> 16384, '32768' -> 32768, '1.5k' -> 1536."""
    problem = token_problem(item, MIN_LENGTH)
    if problem is not None:
        reason = "" if problem.startswith("not ") else f": it is {problem}"
        raise ProbeOptionError("lengths", f"{{name}} {show(str(item).strip())} is not a length in tokens{reason}",
                               "use numbers like 4k, 16k or 32768, separated by commas")
    return parse_tokens(item)


def parse_lengths(value: str | int | list | tuple) -> list[int]:
    """'4k,16k,32768' (or a list of such) -> sorted unique token counts."""
    items = value.split(",") if isinstance(value, str) else [value] if isinstance(value, int) else list(value)
    items = [i for i in items if str(i).strip()]
    if not items:
        raise ProbeOptionError("lengths", "no lengths given", "e.g. {name} 4k,16k,32k")
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

WARMUP_TOKENS = 1024


def run_probe(model: str | Path, against: str | Path | None = None, lengths: str | list[int] | None = None,
              quick: bool = False, passkey: bool = False, device: str = "auto", dtype: str = "auto",
              text: str | Path | None = None, dataset: str | None = None, thresholds: Thresholds | None = None,
              original_context: int | None = None, depths: str | list[float] | None = None,
              buckets: int = 8, chunk: int = 1024, save: bool = True,
              progress: bool | ProbeReporter | None = True) -> dict:
    """Measure MODEL (and BASE, when `against` is given) at each length and judge the result.

    Returns a JSON-able dict; `result["verdict"]["status"]` is "pass", "fail" or "inconclusive".
    When MODEL is a ropeconv output folder (it holds ropeconv.json) and `save`, the result is also
    written there as probe.json (atomically).

    `progress`: a `ProbeReporter` (the CLI passes one that draws steps and an ETA), True for plain
    lines on stderr, False/None for silence. Before the long work a short timed warm-up gives an
    estimate of the whole run (`result["estimate"]`), passed to the reporter first.
    """
    started = time.perf_counter()
    try:  # every input checked before the first line of progress: a bad one gets one line, nothing else
        setup = _prepare(model, against, lengths, quick, passkey, device, dtype, text, dataset, thresholds,
                         original_context, depths, buckets, chunk, save)
    except OSError as exc:
        raise _os_problem(exc) from None
    setup = dataclasses.replace(setup, started=started)
    reporter = _reporter(progress)
    try:
        return _measure_and_judge(setup, reporter)
    except OSError as exc:
        raise _os_problem(exc) from None
    finally:
        reporter.close()


def _prepare(model, against, lengths, quick, passkey, device, dtype, text, dataset, thresholds, original_context,
             depths, buckets, chunk, save) -> _Setup:
    """run_probe's inputs checked, without printing anything: models, lengths, the engine (a GGUF file runs
    in llama.cpp, a folder in transformers), text, device, and each model's tokens of the text (which must
    fit its vocabulary)."""
    from ropeconv.probe import text as texts
    from ropeconv.probe.backend import check_same_kind, describe_gguf, is_gguf, pick_backend

    thresholds = thresholds or Thresholds()
    if buckets < 1 or chunk < 1:
        raise RopeconvError("buckets and chunk must be positive", "e.g. 8 buckets, chunks of 1024 positions")
    gguf = is_gguf(model)
    check_same_kind(gguf, is_gguf(against) if against is not None else None)
    describe = describe_gguf if gguf else _describe
    target = describe(model, original_context)
    base = describe(against, original_context) if against is not None else None
    trained = target["original_context"]
    wanted = parse_lengths(lengths) if lengths is not None else default_lengths(trained, target["served_context"], quick)
    depth_list = None
    if passkey:
        from ropeconv.probe.passkey import parse_depths

        depth_list = parse_depths(depths)
    from ropeconv.probe.passkey import ANSWER_TOKENS

    backend, choice = pick_backend(gguf, device, dtype, n_ctx=max(wanted) + ANSWER_TOKENS)
    source_text = texts.load_text(text, dataset, min_tokens=max(wanted))
    inputs = {role: _model_input(role, info, target, source_text, max(wanted), backend)
              for role, info in (("against", base), ("model", target)) if info is not None}
    return _Setup(target=target, base=base, lengths=wanted, trained=trained, quick=quick and lengths is None,
                  depths=depth_list, text=source_text, backend=backend, dtype=choice,
                  thresholds=thresholds, buckets=buckets, chunk=chunk, save=save, started=0.0, inputs=inputs)


@dataclass(frozen=True)
class _ModelInput:
    """One model's side of the probe, checked before anything runs: its tokenizer and its tokens of the text."""

    tokenizer: Any
    ids: list[int]


def _model_input(role: str, info: dict, target: dict, source_text, count: int, backend) -> _ModelInput:
    """The model's files checked (a folder: none links out of it, weights present), its tokens of the text
    (by its own tokenizer: a GGUF's through llama.cpp), and those tokens checked against its vocabulary —
    an id past the embedding would crash the forward pass."""
    from ropeconv.probe import text as texts
    from ropeconv.probe.backend import TRANSFORMERS

    if backend.name == TRANSFORMERS:
        _check_weights(info)
    tokenizer = backend.tokenizer(Path(info["path"]))
    ids = texts.tokenize(tokenizer, source_text, count)
    vocab = backend.vocab_size(tokenizer, info["vocab_size"])
    if vocab is not None and ids and max(ids) >= vocab:
        who = f"BASE {info['label']}" if role == "against" else f"MODEL {info['label']}"
        other = target["vocab_size"] if role == "against" else None
        than = f", smaller than MODEL's ({other})" if other is not None and other > vocab else ""
        raise RopeconvError(f"{who} has a vocabulary of {vocab} tokens{than}, but its tokenizer makes token "
                            f"{max(ids)} of the text: that model's files do not fit together",
                            "compare against the model MODEL was made from (the same vocabulary)" if role == "against"
                            else "use a folder whose tokenizer matches its config.json (vocab_size)")
    return _ModelInput(tokenizer=tokenizer, ids=ids)


def _check_weights(info: dict) -> None:
    """A folder's files (none links out of it) and its weights, present before anything loads."""
    from ropeconv.folder import model_files

    files = model_files(Path(info["path"]))
    if not any(name.endswith((".safetensors", ".bin")) for name in files):
        raise RopeconvError(f"{info['label']} has no weights (no *.safetensors or *.bin file in {info['path']})",
                            "pass a Hugging Face model folder with config.json and its weights")


def _os_problem(exc: OSError) -> RopeconvError:
    """An OS error on a file the probe was given or reads (a name too long, a folder it may not read)."""
    where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
    return RopeconvError(f"cannot read{where}: {exc.strerror or type(exc).__name__}",
                         "check the paths given to the probe and their permissions")


@dataclass(frozen=True)
class _Setup:
    """One probe run, its inputs checked: what to measure, on what, and how to judge it."""

    target: dict  # _describe(MODEL) or describe_gguf(MODEL)
    base: dict | None  # the same for BASE, with --against
    lengths: list[int]
    trained: int  # L0
    quick: bool  # --quick chose the lengths
    depths: list[float] | None  # passkey depths; None without --passkey
    text: Any  # probe.text.Text
    backend: Backend  # transformers for a folder, llama.cpp for a GGUF
    dtype: Any  # measure.DtypeChoice
    thresholds: Thresholds
    buckets: int
    chunk: int
    save: bool
    started: float  # time.perf_counter() at the start
    inputs: dict  # role ("against", "model") -> _ModelInput

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def roles(self) -> list[tuple[str, dict]]:
        return [(role, info) for role, info in (("against", self.base), ("model", self.target)) if info is not None]


@dataclass
class _Run:
    """What the measuring loop gathers: per length its summaries, the passkey result, what each engine said."""

    runs: list[dict]  # {"length": n, role: summary, …}
    token_info: dict = dataclasses.field(default_factory=dict)  # role -> sha256 of its tokens
    passkey: dict | None = None
    engine: dict = dataclasses.field(default_factory=dict)  # role -> Backend.engine_report


def _measure_and_judge(setup: _Setup, reporter: ProbeReporter) -> dict:
    """Measure every model over its windows (one loop, whichever engine), then judge and build the result."""
    trained = setup.trained
    # Which windows each model needs: with static RoPE the shorter lengths are prefixes of the longest.
    windows = {role: measured_windows(setup.lengths, info["record"]["rope_type"]) for role, info in setup.roles}
    quick_windows = measured_windows(default_lengths(trained, setup.target["served_context"], quick=True),
                                     setup.target["record"]["rope_type"])
    timer = _Timer([(role, n) for role, _ in setup.roles for n in windows[role]], quick_windows, setup.quick,
                   setup.chunk)
    gathered = _Run(runs=[{"length": n} for n in setup.lengths])
    for role, info in setup.roles:
        _measure_model(setup, role, info, windows[role], timer, gathered, reporter)
    return _result(setup, gathered, timer)


def _measure_model(setup: _Setup, role: str, info: dict, windows: list[int], timer: _Timer, gathered: _Run,
                   reporter: ProbeReporter) -> None:
    """Load one model, warm up (the first model only), measure each of its windows, and run the passkey."""
    from ropeconv.probe import text as texts

    backend, device = setup.backend, setup.device
    label = f"{'before' if role == 'against' else 'after' if setup.base else 'model'}: {info['label']}"
    tokenizer, ids = setup.inputs[role].tokenizer, setup.inputs[role].ids
    gathered.token_info[role] = texts.token_fingerprint(ids)
    t0 = time.perf_counter()
    loaded = backend.load(Path(info["path"]))
    # said once loaded, not before: a model that does not load gets its one error line and nothing else
    reporter.note(f"loaded {label} ({time.perf_counter() - t0:.0f} s)")
    try:
        gathered.engine[role] = backend.engine_report(loaded)
        if timer.estimate is None:
            _measuring(lambda: timer.warm_up(backend, loaded, ids, time.perf_counter() - t0),
                       f"the warm-up of {label}", device)
            reporter.estimate(timer.estimate)
        for window in windows:
            _measure_window(setup, role, label, loaded, ids, window, timer, gathered.runs, reporter)
        if role == "model" and setup.depths is not None:
            from ropeconv.probe.passkey import run_passkey

            reporter.note(f"{label} · passkey at {len(setup.lengths) * len(setup.depths)} prompts")
            answer = lambda prompt: backend.greedy_answer(loaded, tokenizer, prompt)  # noqa: E731
            gathered.passkey = _measuring(lambda: run_passkey(loaded, tokenizer, setup.lengths, setup.depths,
                                                              reporter.advance, answer=answer),
                                          "running the passkey test", device)
    finally:
        loaded = None  # drop the weights before the next model loads
        backend.release()


def _measure_window(setup: _Setup, role: str, label: str, loaded, ids: list[int], window: int, timer: _Timer,
                    runs: list[dict], reporter: ProbeReporter) -> None:
    """One forward pass over `window` tokens; its losses summarized for this length and the shorter ones."""
    from ropeconv.probe import measure

    backend = setup.backend
    step = timer.step(role, label, window, backend.steps_for(loaded, window, setup.chunk))
    reporter.begin(step)
    t0 = time.perf_counter()
    losses = _measuring(lambda: backend.token_losses(loaded, ids[:window], setup.chunk, reporter.advance),
                        f"measuring {window} tokens of {label}", setup.device)
    seconds = round(time.perf_counter() - t0, 2)
    timer.measured(window, seconds)
    for run in runs:  # this window's own length, and the shorter ones it is the prefix of
        n = run["length"]
        if n > window or role in run:
            continue
        summary = measure.summarize(losses[:n - 1], setup.trained, setup.buckets)
        summary["seconds"] = seconds if n == window else 0.0
        if n != window:
            summary["prefix_of"] = window
        run[role] = summary
    line = "; ".join(f"{r['length']} tokens: perplexity {_fmt(r[role]['ppl'])}" for r in runs
                     if role in r and (r["length"] == window or r[role].get("prefix_of") == window))
    reporter.end(step, f"{label} at {line} ({seconds:.0f} s)")


def _result(setup: _Setup, gathered: _Run, timer: _Timer) -> dict:
    """The verdict and the result dict (saved beside or inside a ropeconv output)."""
    target, base, trained, thresholds, runs = setup.target, setup.base, setup.trained, setup.thresholds, gathered.runs
    warnings: list[str] = []
    if base is not None and gathered.token_info.get("against") != gathered.token_info.get("model"):
        warnings.append("MODEL and BASE tokenize the text differently: their perplexities are not directly comparable")
    verdict = judge(runs, trained, thresholds, gathered.passkey)
    if base is not None:
        verdict["source_checks"] = source_checks(runs, trained, thresholds)
    result = {
        "model": target["record"],
        "against": base["record"] if base else None,
        "engine": setup.backend.name,
        "device": setup.device,
        "dtype": setup.dtype.dtype,
        "dtype_reason": setup.dtype.reason,
        "text": {**setup.text.describe(), "tokens_sha256": gathered.token_info.get("model")},
        "method": _method_note(trained, setup.buckets, setup.chunk, setup.backend),
        "lengths": setup.lengths,
        "quick": setup.quick,
        "trained_context": trained,
        "results": runs,
        "passkey": gathered.passkey,
        "thresholds": thresholds.to_dict(),
        "verdict": verdict,
        "warnings": warnings,
        "estimate": timer.estimate.to_dict() if timer.estimate else None,
        "seconds": round(time.perf_counter() - setup.started, 2),
    }
    reports = {role: report for role, report in gathered.engine.items() if report}
    if reports:  # llama.cpp: which build ran it, and the RoPE arguments it reported for each model
        result["llama_cpp"] = {"build": next(iter(reports.values()))["build"],
                               "rope": {role: report["rope"] for role, report in reports.items()}}
    if setup.quick and timer.estimate is not None:
        full = default_lengths(trained, target["served_context"])
        seconds = timer.predict(measured_windows(full, target["record"]["rope_type"]))
        # 3 significant digits: a tiny model's full probe takes milliseconds, which 0.1 s rounding called 0
        result["full_probe"] = {"lengths": full, "models": len(setup.roles), "estimated_seconds": float(f"{seconds:.3g}")}
    if base is None and verdict["status"] != "fail":
        source = target.get("recorded_source") or "SOURCE"
        result["hint"] = (f"without --against only the level past L0 is judged; a conversion worse everywhere "
                          f"than its source also passes it: compare with --against {source}")
    if setup.save and target["is_ropeconv_output"]:
        from ropeconv.probe.backend import result_path

        result["saved"] = _save(result_path(target, RESULT_NAME), result, warnings)
    return redact_json(result)  # a dataset or model named by a URL with a password prints and saves masked


# RoPE that depends on the length of the forward pass: transformers recomputes dynamic NTK's θ from
# it and switches LongRoPE's factors past L0, so a window's first L tokens are not an L-token window.
LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")


def measured_windows(lengths: list[int], rope_type: str) -> list[int]:
    """The forward passes a model needs for `lengths`. Attention is causal, so with static RoPE the
    losses of the first L tokens of a longer window are those of an L-token window: one pass over
    the longest length gives them all. Length-dependent RoPE is measured window by window."""
    return list(lengths) if rope_type in LENGTH_DEPENDENT_ROPE else [max(lengths)]


class _Timer:
    """The run's time estimate: a warm-up window timed on the first model loaded, scaled to each planned
    window by its arithmetic (`window_cost`), then corrected by each window actually measured."""

    def __init__(self, plan: list[tuple[str, int]], quick_windows: list[int], quick: bool, chunk: int):
        self.plan, self.quick_windows, self.quick, self.chunk = plan, quick_windows, quick, chunk
        self.models = len({role for role, _ in plan})
        self.estimate: Estimate | None = None
        self.costs: tuple[float, float] = (1.0, 0.0)
        self.seconds_per_flop = 0.0
        self.load_seconds = 0.0
        self.done = 0
        self.measured_cost = 0.0
        self.measured_seconds = 0.0

    def cost(self, length: int) -> float:
        return window_cost(length, *self.costs)

    def warm_up(self, backend, model, ids: list[int], load_seconds: float) -> None:
        self.costs = backend.flops_per_token(model)
        tokens = min(WARMUP_TOKENS, len(ids), min(n for _, n in self.plan))
        t0 = time.perf_counter()
        backend.token_losses(model, ids[:tokens], self.chunk)
        backend.synchronize()
        warmup = time.perf_counter() - t0
        self.seconds_per_flop = warmup / self.cost(tokens)
        self.load_seconds = load_seconds
        seconds = [self.seconds_per_flop * self.cost(n) for _, n in self.plan]
        steps = [{"role": role, "length": n, "seconds": round(t, 1)} for (role, n), t in zip(self.plan, seconds)]
        total = self.models * load_seconds + sum(seconds) - load_seconds  # the first load is done
        self.estimate = Estimate(seconds=total, warmup_tokens=tokens, warmup_seconds=warmup,
                                 load_seconds=load_seconds, steps=steps)
        if total > LONG_ESTIMATE_SECONDS:
            quick = None if self.quick else self.predict(self.quick_windows) - load_seconds
            from ropeconv.probe.backend import LLAMA_CPP

            self.estimate.hint = shorten_hint(quick if quick is not None and quick < total else None,
                                              gpu=backend.name != LLAMA_CPP)

    def predict(self, windows: list[int]) -> float:
        """Seconds to load every model and run each over `windows`, at the rate seen so far."""
        rate = (self.measured_seconds / self.measured_cost) if self.measured_cost else self.seconds_per_flop
        return self.models * (self.load_seconds + sum(rate * self.cost(n) for n in windows))

    def step(self, role: str, label: str, length: int, ticks: int) -> ProbeStep:
        self.done += 1
        rate = (self.measured_seconds / self.measured_cost) if self.measured_cost else self.seconds_per_flop
        return ProbeStep(index=self.done, count=len(self.plan), role=role, label=label,
                         length=length, ticks=ticks, estimated_seconds=rate * self.cost(length))

    def measured(self, length: int, seconds: float) -> None:
        self.measured_cost += self.cost(length)
        self.measured_seconds += seconds


def open_model_folder(model: str | Path, original_context: int | None, measured_by: str):
    """(source, folder, config, spec) of a Hugging Face model to measure: a local folder or a Hub repo
    (a GGUF file is refused: the measurement runs transformers). The spec takes L0 from a ropeconv
    record where config.json no longer states it (an NTK output)."""
    from ropeconv.folder import read_config
    from ropeconv.record import read_spec_with_record
    from ropeconv.source import resolve

    source = resolve(str(model), need="weights")
    if source.kind == "gguf":
        raise RopeconvError(f"{model} is a GGUF file; {measured_by} runs Hugging Face models",
                            "use the safetensors folder it came from (or the one `ropeconv extend` wrote)")
    folder = Path(source.path)
    config = read_config(folder)
    return source, folder, config, read_spec_with_record(folder, config, original_context)


def _describe(model: str | Path, original_context: int | None) -> dict:
    """Where MODEL is, what its config says about RoPE, and how to name it in output."""
    from ropeconv.record import config_fingerprint
    from ropeconv.record import read_folder_record

    source, folder, config, spec = open_model_folder(model, original_context, "the probe")
    recorded = read_folder_record(folder)
    label = source.repo_id or folder.name or str(folder)
    return {
        "path": folder, "label": label, "original_context": spec.original_context,
        "vocab_size": _vocab_size(config),
        "served_context": spec.served_context(),
        # Only local folders get probe.json: a Hub repo's files live in the shared download cache.
        "is_ropeconv_output": source.kind == "local" and recorded is not None,
        "recorded_source": _recorded_source(recorded.source if recorded else {}),
        # config_sha256: which config was measured (the model card ignores a probe.json of another config)
        "record": {**source.to_dict(), "rope_type": spec.rope_type, "factor": spec.factor,
                   "original_context": spec.original_context, "served_context": spec.served_context(),
                   "config_sha256": config_fingerprint(folder)},
    }


def _recorded_source(source: dict) -> str | None:
    """The source an earlier `ropeconv extend` recorded: its repo id, or its local folder when it still exists."""
    path = source.get("repo_id") or source.get("path")
    if not isinstance(path, str):
        return None
    return path if source.get("repo_id") or Path(path).is_dir() else None


def _vocab_size(config: dict) -> int | None:
    """config.json's vocab_size (a multimodal model's text_config's), None where absent or not a count."""
    from ropeconv.numbers import parse_tokens

    text_config = config.get("text_config")
    value = config.get("vocab_size")
    if value is None and isinstance(text_config, dict):
        value = text_config.get("vocab_size")
    return parse_tokens(value) if isinstance(value, int) else None


def guarded(body, what: str, device: str):
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


def _measuring(body, what: str, device: str):
    """`guarded`, and what torch raises on a model whose files do not fit together (an index past the
    embedding, shapes that disagree) as one line instead of an internal error."""
    from ropeconv.probe.measure import first_line

    try:
        return guarded(body, what, device)
    except (RuntimeError, IndexError, ValueError) as exc:
        raise RopeconvError(f"{what} failed: {type(exc).__name__}: {first_line(exc)}",
                            "the model's files (config.json, weights, tokenizer) may not fit together; "
                            "rerun with --debug for the traceback") from None




def _method_note(trained: int, buckets: int, chunk: int, backend) -> dict:
    return {
        "protocol": "one forward pass over the first L tokens of the text per length (YaRN paper protocol; "
                    "no sliding window); the tokenizer's usual special tokens included",
        "loss": f"negative log-likelihood (nats) of token t+1 given tokens 0..t, from {backend.loss_note(chunk)}",
        "average": "token-weighted mean of the per-token loss over the positions covered; perplexity = exp(mean)",
        "positions": f"query position t, 0-based; 'inside' = t < {trained} (L0), 'beyond' = t ≥ {trained}",
        "buckets": f"{buckets} near-equal position ranges, one edge at L0 when the window passes it",
        "reference": "past-L0 buckets are judged against the second half of the trained window "
                     f"(positions {trained // 2}–{trained})",
        "last_quarter": "the last quarter of the query positions",
        "windows": "attention is causal, so with static RoPE a shorter length is the first L tokens of the "
                   "longest window, measured in the same pass (`prefix_of`); dynamic and LongRoPE models, whose "
                   "RoPE depends on the length of the pass, get one pass per length",
    }


def _save(path: Path, result: dict, warnings: list[str]) -> str | None:
    from ropeconv.output import write_json_atomic

    try:
        write_json_atomic(path, redact_json(result))
    except RopeconvError as exc:
        warnings.append(f"could not save {path.name}: {exc.line()}")
        return None
    except OSError as exc:  # e.g. a read-only mount, where even removing the temporary file fails
        warnings.append(f"could not save {path.name} in {path.parent}: {exc.strerror or type(exc).__name__}")
        return None
    return str(path)


def _fmt(value: float | None) -> str:
    from ropeconv.probe.verdict import _f

    return _f(value)


def _reporter(progress: bool | ProbeReporter | None) -> ProbeReporter:
    if isinstance(progress, ProbeReporter):
        return progress
    return TextReporter() if progress else ProbeReporter()
