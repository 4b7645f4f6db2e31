"""`ropeconv tune`: the training-free scaling that measures best on this model.

A search (Optuna) over one method's parameters (`space`), each candidate measured with the probe's
own loss on one loaded model whose rotary values are swapped in place (`swap`, `objective`); the
objective is perplexity past L0 at the target length, under a bound on the short-context cost
(perplexity on the probe's 4k window over the unscaled model's). The winner is written by
`ropeconv.api.extend` (same config, record and warnings as `extend`), with `tune.json` and
`tune.png` beside the config (`report`).

`run_tune(...)` is the library entry point; it never prints (progress goes to callbacks). In order:
every option is checked (nothing created yet, the model not loaded); the output is claimed
(`write.Reservation`: a second tune to it is refused at once); the study is opened (a storage that
cannot work is said at once, before the model loads); the search runs; the winner, tune.json and
tune.png are written in one temporary folder and renamed into place once. Every line and file goes
through `ropeconv.redact` with the storage URL's password. torch, transformers and optuna are
imported inside the functions.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ropeconv.errors import RopeconvError
from ropeconv.redact import redact, redact_json, url_password
from ropeconv.tune.progress import Plan, Progress, Tracker
from ropeconv.tune.space import TUNABLE, Space, check_method
from ropeconv.tune.study import SAMPLERS, SEED_LIMIT, SearchSettings

__all__ = ["run_tune", "TuneSettings", "Progress", "TUNABLE", "SAMPLERS", "parse_duration"]

DEFAULT_BUDGET = 20
SHORT_LENGTH = 4096  # the probe's short-context length
PLOT_BUCKETS = 16
DB_SUFFIX = ".optuna.db"


@dataclass
class TuneSettings:
    target_context: Any  # tokens: 32768, "32k"
    method: str = "yarn"
    budget: int | None = None  # finished trials in the study (default DEFAULT_BUDGET without a time limit)
    time_limit: float | None = None  # seconds
    seed: int = 0
    sampler: str = "tpe"
    pareto: bool = False
    prune: bool = False
    portable: bool = False
    max_short_ratio: float | None = None  # default: the probe's threshold
    short_length: int | None = None  # default: min(4096, L0)
    storage: str | None = None  # Optuna storage URL; default: SQLite file beside the output
    worker: bool = False  # evaluate trials of the study only; write no model
    device: str = "auto"
    dtype: str = "auto"
    chunk: int = 1024


def parse_duration(value: str | float | int | None) -> float | None:
    """'30m' -> 1800.0, '90s', '1h', '1h30m', '45' (seconds)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms]?)", text)
        if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms]?)", "", text).strip():
            raise RopeconvError(f"--time {value!r} is not a duration", "e.g. --time 30m, 2h, 1h30m or 600s")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1, "": 1}[u] for n, u in parts)
    if not seconds > 0 or not math.isfinite(seconds):
        raise RopeconvError(f"--time {value!r} must be a positive duration", "e.g. --time 30m")
    return seconds


def _validate(settings: TuneSettings) -> tuple[int, int | None, float | None, float]:
    """Every option that can be checked without the model: nothing is created or loaded yet."""
    from ropeconv.probe.verdict import Thresholds
    from ropeconv.request import parse_token_field
    from ropeconv.tune import study as studies

    check_method(settings.method)
    target = parse_token_field("target_context", settings.target_context)  # says the bound, as extend does
    time_limit = parse_duration(settings.time_limit)
    budget = settings.budget
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise RopeconvError(f"--budget {budget!r} must be a whole number of trials ≥ 1", "e.g. --budget 20")
    if budget is None and time_limit is None:
        budget = DEFAULT_BUDGET
    seed = settings.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise RopeconvError(f"--seed {seed!r} must be a whole number from 0 to {SEED_LIMIT - 1}", "e.g. --seed 0")
    bound = settings.max_short_ratio if settings.max_short_ratio is not None else Thresholds().max_short_ratio
    if not bound >= 1.0:
        raise RopeconvError(f"--max-short-ratio {bound!r} must be ≥ 1", "e.g. --max-short-ratio 1.05")
    if settings.pareto and settings.prune:
        raise RopeconvError("--prune and --pareto were both given: Optuna prunes single-objective studies only",
                            "drop --prune, or drop --pareto")
    if settings.chunk < 1:
        raise RopeconvError("chunk must be positive", "e.g. 1024 positions")
    studies.require_optuna()
    studies.require_sampler(_search_settings(settings, budget, time_limit, bound))
    return target, budget, time_limit, bound


def _search_settings(settings: TuneSettings, budget: int | None, time_limit: float | None,
                     bound: float) -> SearchSettings:
    return SearchSettings(budget=budget, time_limit=time_limit, seed=settings.seed, sampler=settings.sampler,
                          pareto=settings.pareto, prune=settings.prune, max_short_ratio=bound, worker=settings.worker)


def default_output(source, method: str, target: int) -> Path:
    name = (source.repo_id.split("/")[-1] if source.repo_id else source.path.name) or "model"
    size = f"{target // 1024}k" if target % 1024 == 0 else str(target)
    folder = f"{name}-tuned-{method}-{size}"
    return Path(folder) if source.kind == "hub" else source.path.absolute().parent / folder


@dataclass
class _Setup:
    """What the checks resolved, before anything is created."""

    source: Any
    folder: Path
    spec: Any
    target: int
    budget: int | None
    time_limit: float | None
    bound: float
    L0: int
    short_length: int
    dest: Path
    storage: Any  # storage.StorageTarget


def run_tune(model: str | Path, settings: TuneSettings, *, text: str | Path | None = None, dataset: str | None = None,
             original_context: int | None = None, output: str | Path | None = None, force: bool = False,
             progress: Callable[[Progress], None] | None = None, note: Callable[[str], None] | None = None) -> dict:
    """Search `settings.method`'s parameters for MODEL at the target context; write the winner.

    Returns a JSON-able result (also written as tune.json in the output folder). Every error, note,
    progress label and written file is scrubbed of the storage URL's password."""
    secrets = tuple(s for s in (url_password(settings.storage or ""),) if s)
    scrub = lambda line: redact(line, secrets)  # noqa: E731
    try:
        setup = _prepare(model, settings, original_context, output, force)
        return redact_json(_run(settings, setup, text=text, dataset=dataset, original_context=original_context,
                                force=force, progress=progress, say=lambda line: note and note(scrub(line))), secrets)
    except RopeconvError as exc:
        if secrets and scrub(exc.line()) != exc.line():  # a driver's message quoting the password, in any layer
            raise RopeconvError(scrub(exc.problem), scrub(exc.fix) if exc.fix else None, exc.exit_code) from None
        raise
    except Exception as exc:  # a bug, or a driver's error nobody worded: still never the password
        if secrets and scrub(str(exc)) != str(exc):
            raise RuntimeError(f"{type(exc).__name__}: {scrub(str(exc))}") from None
        raise


def _prepare(model, settings: TuneSettings, original_context, output, force: bool) -> _Setup:
    """All checks, in the order a user fixes them; creates nothing and loads no weights."""
    from ropeconv.plan import plan
    from ropeconv.probe import open_model_folder
    from ropeconv.record import read_folder_record
    from ropeconv.request import ConversionRequest
    from ropeconv.tune.storage import check_storage, sqlite_url

    target, budget, time_limit, bound = _validate(settings)
    source, folder, config, spec = open_model_folder(model, original_context, "tune")
    earlier = read_folder_record(folder)
    # the planner's own checks: already scaled (never stacked), a target not past L0, the family's methods
    # (they concern the model and the target: LongRoPE's lists are what the search finds, neutral ones stand in)
    lists = {name: [1.0] * (spec.rotary_dim // 2) for name in ("short_factor", "long_factor")}
    request = ConversionRequest.build(settings.method, target_context=target, original_context=original_context,
                                      params=lists if settings.method == "longrope" else {})
    L0 = plan(spec, request, earlier.base if earlier else None).original_context
    short_length = settings.short_length or min(SHORT_LENGTH, L0)
    if not 16 <= short_length <= L0:
        raise RopeconvError(f"the short-context window {short_length} must be between 16 and L0 ({L0})",
                            f"e.g. {min(SHORT_LENGTH, L0)}")
    dest = (Path(output) if output else default_output(source, settings.method, target)).absolute()
    if not settings.worker:
        _check_output(folder, dest, force)
    url = settings.storage or sqlite_url(dest.with_name(dest.name + DB_SUFFIX))
    storage = check_storage(url, source=folder, output=None if settings.worker else dest)
    return _Setup(source, folder, spec, target, budget, time_limit, bound, L0, short_length, dest, storage)


def _check_output(folder: Path, dest: Path, force: bool) -> None:
    from ropeconv.output import check_destination

    if dest.is_dir() and not dest.is_symlink() and not force and any(dest.iterdir()):
        raise RopeconvError(f"{dest} already exists",
                            "pass --force to replace it (the study's stored trials are kept: the search continues "
                            "from them up to --budget), or choose another -o")
    check_destination(folder, dest, force)


def _run(settings: TuneSettings, setup: _Setup, *, text, dataset, original_context, force: bool,
         progress, say: Callable[[str], None]) -> dict:
    from ropeconv.record import config_fingerprint
    from ropeconv.probe import load_tokenizer
    from ropeconv.probe import text as texts
    from ropeconv.tune.write import Reservation

    started = time.perf_counter()
    source_text = texts.load_text(text, dataset, min_tokens=setup.target)
    try:
        ids = texts.tokenize(load_tokenizer(setup.folder), source_text, setup.target)
    except RopeconvError as exc:
        raise RopeconvError(f"{exc.problem} (--target-context {setup.target})",
                            "pass a longer --text or --dataset, or a shorter --target-context") from None
    name = _study_name(settings, setup, config_fingerprint(setup.folder), texts.token_fingerprint(ids))
    search_settings = _search_settings(settings, setup.budget, setup.time_limit, setup.bound)
    reservation = None if settings.worker else Reservation.claim(setup.dest)
    finished = False
    try:
        study = _open_study(name, setup.storage, search_settings)
        document = _search(settings, setup, study, ids, source_text, search_settings, progress, say)
        document["seconds"] = round(time.perf_counter() - started, 2)
        if reservation is not None:
            _write_output(setup, document, reservation, original_context, force, progress, say)
            document["seconds"] = round(time.perf_counter() - started, 2)
        finished = True
        return document
    finally:
        if reservation is not None:
            reservation.release(remove_parents=not finished)


def _study_name(settings: TuneSettings, setup: _Setup, fingerprint: str, text_sha: str) -> str:
    from ropeconv.tune import study as studies

    return studies.study_name(fingerprint=fingerprint, method=settings.method, target=setup.target, text_sha=text_sha,
                              short_length=setup.short_length, bound=setup.bound, seed=settings.seed,
                              portable=settings.portable, pareto=settings.pareto, sampler=settings.sampler,
                              prune=settings.prune)


def _open_study(name: str, storage, search_settings: SearchSettings):
    """The study, opened before the model loads; a SQLite file this call created is removed when opening fails."""
    from ropeconv.tune import study as studies

    fresh = storage.sqlite_path is not None and not storage.sqlite_path.exists()
    try:
        return studies.open_study(name, storage, search_settings)
    except BaseException:
        if fresh:
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{storage.sqlite_path}{suffix}").unlink(missing_ok=True)
        raise


def _search(settings: TuneSettings, setup: _Setup, study, ids: list[int], source_text, search_settings: SearchSettings,
            progress, say: Callable[[str], None]) -> dict:
    """Load the model once, time the warm-up (the short-context reference), search, and (main run)
    measure the unscaled model at the target for the comparison."""
    from ropeconv.probe import measure
    from ropeconv.probe import text as texts
    from ropeconv.tune import study as studies
    from ropeconv.tune.objective import Evaluator
    from ropeconv.tune.study import rung_lengths

    basis = setup.spec.basis()
    space = Space(settings.method, basis, setup.target, settings.portable)
    rungs = rung_lengths(basis, setup.target) if settings.prune else ()
    tracker = Tracker(Plan(setup.budget, setup.time_limit, (setup.short_length, *rungs, setup.target),
                           None if settings.worker else setup.target), progress and (
        lambda event: progress(replace(event, label=redact(event.label, (setup.storage.password or "",))))))
    device = measure.pick_device(settings.device)
    choice = measure.dtype_choice(device, settings.dtype)
    dtype = measure.pick_dtype(device, choice.dtype)
    load_line = f"loading {setup.folder.name} ({device}, {str(dtype).replace('torch.', '')})"
    say(load_line)
    tracker.step("load", load_line)
    loaded = measure.load_model(setup.folder, device, dtype)
    evaluator = Evaluator(loaded, ids, basis, setup.short_length, buckets=PLOT_BUCKETS, chunk=settings.chunk)
    try:
        reference = f"reference: the unscaled model on the first {setup.short_length} tokens"
        say(reference)
        tracker.step("reference", reference)
        base_short = _guarded(lambda: evaluator.base_short, device)
        tracker.warmed_up(measure.flops_per_token(loaded), setup.short_length, base_short.seconds)
        say(f"searching {settings.method}: study {study.study_name} in {setup.storage.shown}")
        tracker.step("search", f"searching {settings.method}")
        outcome = _guarded(lambda: studies.search(space, evaluator, study, search_settings, tracker), device)
        document = _document(settings, setup, space, basis, base_short, outcome, source_text, ids, device, choice)
        document["study"]["storage"] = setup.storage.shown
        if settings.worker:
            document["worker"] = True
            return document
        if outcome.best is None:
            raise RopeconvError(f"no finished candidate kept perplexity at {setup.short_length} tokens within "
                                f"×{setup.bound:g} of the unscaled model's", "raise --budget, or loosen --max-short-ratio",
                                exit_code=1)
        comparison = f"comparison: the unscaled model at {setup.target} tokens (for the curve)"
        say(comparison)
        tracker.step("comparison", comparison)
        base_long = _guarded(lambda: evaluator.unscaled(setup.target), device)
        document["base"] = {"past_ppl": base_long.ppl_beyond, "buckets": [list(b) for b in base_long.buckets]}
        tracker.plan.final_window = None  # nothing long is left
        tracker.step("write", f"writing {setup.dest.name}")
        return document
    finally:
        evaluator.close()
        loaded = None
        measure.release_memory(device)


def _document(settings: TuneSettings, setup: _Setup, space: Space, basis, base_short, outcome, source_text, ids,
              device: str, choice) -> dict:
    from ropeconv.probe import text as texts

    return {
        "model": setup.source.to_dict(),
        "method": settings.method,
        "target_context": setup.target,
        "original_context": setup.L0,
        "rope_theta": basis.theta,
        "rotary_dim": basis.dim,
        "objective": "mean token loss (nats) over positions ≥ L0 of the first target-context tokens; "
                     "reported as perplexity past L0",
        "short_context": {"length": setup.short_length, "base_ppl": base_short.ppl,
                          "bound": f"perplexity at {setup.short_length} tokens ≤ {setup.bound:g} × the unscaled model's"},
        "max_short_ratio": setup.bound,
        "settings": {**asdict(settings), "budget": setup.budget, "time_limit": setup.time_limit,
                     "storage": setup.storage.shown if settings.storage else None},
        "study": {"name": outcome.study_name, "finished_here": outcome.finished_here},
        "device": device,
        "dtype": choice.dtype,
        "dtype_reason": choice.reason,
        "text": {**source_text.describe(), "tokens_sha256": texts.token_fingerprint(ids)},
        "trials": outcome.trials,
        "best": outcome.best,
        "default": _default_row(space, outcome.trials),
        "front": outcome.front,
        "search_seconds": outcome.seconds,
        "warnings": [],
    }


def _write_output(setup: _Setup, document: dict, reservation, original_context, force: bool, progress,
                  say: Callable[[str], None]) -> None:
    """The winner as `extend` writes it, with tune.json and tune.png, in the reserved temporary folder;
    then one rename. `extend`'s report (warnings, engine rules, serve commands) is for the final path."""
    from ropeconv.api import extend
    from ropeconv.record import config_fingerprint
    from ropeconv.request import ConversionRequest
    from ropeconv.tune import report

    winner = document["best"]["candidate"]
    request = ConversionRequest.build(winner["method"], target_context=winner["served_context"], params=winner["params"],
                                      original_context=original_context, output=setup.dest, force=force)
    planned = extend(setup.source, replace(request, dry_run=True))  # what extend says about this output
    document["output"] = str(setup.dest)
    document["warnings"] = list(planned["warnings"])
    document["engine_rules"] = planned.get("engine_rules", [])
    document["launch"] = planned.get("launch", [])
    document["extend"] = {k: planned[k] for k in ("output", "served_context", "warnings", "config_diff") if k in planned}
    say(f"writing {setup.dest}")

    def write_files(inner: Path) -> None:
        extend(setup.source, replace(request, output=inner, force=False))
        document["config_sha256"] = config_fingerprint(inner)  # which config the winner is (the card checks it)
        document["tune_json"] = str(setup.dest / report.RESULT_NAME)
        document["plot"] = str(setup.dest / report.PLOT_NAME) if report.plot_available() else None
        clean = redact_json(document, (setup.storage.password or "",))
        report.write_plot(inner, clean)
        # the serve commands name this machine's paths inside their text: printed and returned, not filed
        # (tune.json is pushed with the model)
        report.write_result(inner, {k: v for k, v in clean.items() if k != "launch"})

    reservation.finish(write_files, force)


def _default_row(space: Space, trials: list[dict]) -> dict | None:
    values, _ = space.default()
    for row in trials:
        if row["state"] in ("complete", "pruned") and all(
                math.isclose(row["params"].get(k, math.nan), v, rel_tol=1e-9) for k, v in values.items()):
            return row
    return None


def _guarded(body, device: str):
    from ropeconv.probe import guarded

    return guarded(body, "measuring a candidate", device)
