"""`ropeconv tune`: the training-free scaling that measures best on this model.

A search (Optuna) over one method's parameters (`space`), each candidate measured with the probe's
own loss on one loaded model whose rotary values are swapped in place (`swap`, `objective`); the
objective is perplexity past L0 at the target length, under a bound on the short-context cost
(perplexity on the probe's 4k window over the unscaled model's). The winner is written by
`ropeconv.api.extend` (same config, record and warnings as `extend`), with `tune.json` and
`tune.png` beside the config (`report`).

`run_tune(...)` is the library entry point; it never prints (progress goes to callbacks).
torch, transformers and optuna are imported inside the functions.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ropeconv.errors import RopeconvError
from ropeconv.tune.space import TUNABLE, Space, check_method
from ropeconv.tune.study import SAMPLERS, Progress, SearchSettings

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
    from ropeconv.numbers import parse_tokens
    from ropeconv.probe.verdict import Thresholds

    check_method(settings.method)
    target = parse_tokens(settings.target_context)
    if target is None:
        raise RopeconvError(f"--target-context {settings.target_context!r} is not a whole number of tokens",
                            "e.g. --target-context 32768 or 32k")
    time_limit = parse_duration(settings.time_limit)
    budget = settings.budget
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise RopeconvError(f"--budget {budget!r} must be a whole number of trials ≥ 1", "e.g. --budget 20")
    if budget is None and time_limit is None:
        budget = DEFAULT_BUDGET
    bound = settings.max_short_ratio if settings.max_short_ratio is not None else Thresholds().max_short_ratio
    if not bound >= 1.0:
        raise RopeconvError(f"--max-short-ratio {bound!r} must be ≥ 1", "e.g. --max-short-ratio 1.05")
    if settings.sampler not in SAMPLERS:
        raise RopeconvError(f"--sampler {settings.sampler!r} is not one of {', '.join(SAMPLERS)}", "use tpe (default), random or cmaes")
    if settings.pareto and settings.prune:
        raise RopeconvError("--prune and --pareto were both given: Optuna prunes single-objective studies only",
                            "drop --prune, or drop --pareto")
    if settings.chunk < 1:
        raise RopeconvError("chunk must be positive", "e.g. 1024 positions")
    return target, budget, time_limit, bound


def default_output(source, method: str, target: int) -> Path:
    name = (source.repo_id.split("/")[-1] if source.repo_id else source.path.name) or "model"
    size = f"{target // 1024}k" if target % 1024 == 0 else str(target)
    folder = f"{name}-tuned-{method}-{size}"
    return Path(folder) if source.kind == "hub" else source.path.absolute().parent / folder


def run_tune(model: str | Path, settings: TuneSettings, *, text: str | Path | None = None, dataset: str | None = None,
             original_context: int | None = None, output: str | Path | None = None, force: bool = False,
             progress: Callable[[Progress], None] | None = None, note: Callable[[str], None] | None = None) -> dict:
    """Search `settings.method`'s parameters for MODEL at the target context; write the winner.

    Returns a JSON-able result (also written as tune.json in the output folder)."""
    from ropeconv.output import check_destination
    from ropeconv.probe import open_model_folder
    from ropeconv.record import read_folder_record
    from ropeconv.tune import study as studies

    started = time.perf_counter()
    say = note or (lambda line: None)
    target, budget, time_limit, bound = _validate(settings)
    source, folder, config, spec = open_model_folder(model, original_context, "tune")
    earlier = read_folder_record(folder)
    if spec.is_scaled or earlier is not None:
        current = f"{spec.rope_type} ×{spec.factor:g}" if spec.is_scaled and spec.factor else (
            earlier.method if earlier is not None else spec.rope_type)
        raise RopeconvError(f"{model} is already scaled ({current})", "tune the unscaled base model it was made from")
    L0 = spec.original_context
    if target <= L0:
        raise RopeconvError(f"--target-context {target} is not longer than the trained context {L0}",
                            "pass a longer target, or --original-context if L0 is wrong")
    short_length = settings.short_length or min(SHORT_LENGTH, L0)
    if not 16 <= short_length <= L0:
        raise RopeconvError(f"the short-context window {short_length} must be between 16 and L0 ({L0})",
                            f"e.g. {min(SHORT_LENGTH, L0)}")
    dest = Path(output) if output else default_output(source, settings.method, target)
    if not settings.worker:
        check_destination(folder, dest, force)
    studies.require_optuna()
    basis = spec.basis()
    space = Space(settings.method, basis, target, settings.portable)

    from ropeconv.api import config_fingerprint
    from ropeconv.probe import _load_tokenizer, measure, text as texts

    source_text = texts.load_text(text, dataset, min_tokens=target)
    tokenizer = _load_tokenizer(folder)
    try:
        ids = texts.tokenize(tokenizer, source_text, target)
    except RopeconvError as exc:
        raise RopeconvError(f"{exc.problem} (--target-context {target})",
                            "pass a longer --text or --dataset, or a shorter --target-context") from None
    storage = settings.storage or studies.sqlite_url(dest.absolute().with_name(dest.name + DB_SUFFIX))
    name = studies.study_name(fingerprint=config_fingerprint(folder), method=settings.method, target=target,
                              text_sha=texts.token_fingerprint(ids), short_length=short_length, bound=bound,
                              seed=settings.seed, portable=settings.portable, pareto=settings.pareto,
                              sampler=settings.sampler, prune=settings.prune)
    device = measure.pick_device(settings.device)
    choice = measure.dtype_choice(device, settings.dtype)
    dtype = measure.pick_dtype(device, choice.dtype)
    search_settings = SearchSettings(budget=budget, time_limit=time_limit, seed=settings.seed, sampler=settings.sampler,
                                     pareto=settings.pareto, prune=settings.prune, max_short_ratio=bound,
                                     worker=settings.worker)
    say(f"loading {folder.name} ({device}, {str(dtype).replace('torch.', '')})")
    loaded = measure.load_model(folder, device, dtype)
    from ropeconv.tune.objective import Evaluator

    evaluator = Evaluator(loaded, ids, basis, short_length, buckets=PLOT_BUCKETS, chunk=settings.chunk)
    try:
        say(f"unscaled model on the first {short_length} tokens (the short-context reference)")
        base_short = _guarded(lambda: evaluator.base_short, device)
        say(f"searching {settings.method}: study {name} in {_safe_storage(storage)}")
        outcome = _guarded(lambda: studies.search(space, evaluator, name, storage, search_settings, progress), device)
        document = {
            "model": source.to_dict(),
            "method": settings.method,
            "target_context": target,
            "original_context": L0,
            "rope_theta": basis.theta,
            "rotary_dim": basis.dim,
            "objective": "mean token loss (nats) over positions ≥ L0 of the first target-context tokens; "
                         "reported as perplexity past L0",
            "short_context": {"length": short_length, "base_ppl": base_short.ppl,
                              "bound": f"perplexity at {short_length} tokens ≤ {bound:g} × the unscaled model's"},
            "max_short_ratio": bound,
            # a storage URL may carry a database password: never written as given
            "settings": {**asdict(settings), "budget": budget, "time_limit": time_limit,
                         "storage": _safe_storage(settings.storage) if settings.storage else None},
            "study": {"name": outcome.study_name, "storage": _safe_storage(outcome.storage),
                      "finished_here": outcome.finished_here},
            "device": device,
            "dtype": choice.dtype,
            "dtype_reason": choice.reason,
            "text": {**source_text.describe(), "tokens_sha256": texts.token_fingerprint(ids)},
            "trials": outcome.trials,
            "best": outcome.best,
            "default": _default_row(space, outcome.trials),
            "front": outcome.front,
            "search_seconds": outcome.seconds,
        }
        if settings.worker:
            document["seconds"] = round(time.perf_counter() - started, 2)
            document["worker"] = True
            return document
        if outcome.best is None:
            raise RopeconvError(f"no finished candidate kept perplexity at {short_length} tokens within ×{bound:g} of "
                                "the unscaled model's", "raise --budget, or loosen --max-short-ratio", exit_code=1)
        say(f"unscaled model at {target} tokens (for the curve)")
        base_long = _guarded(lambda: evaluator.unscaled(target), device)
        document["base"] = {"past_ppl": base_long.ppl_beyond, "buckets": [list(b) for b in base_long.buckets]}
    finally:
        evaluator.close()
        loaded = None
        measure.release_memory(device)

    from ropeconv.api import extend
    from ropeconv.tune import report

    winner = outcome.best["candidate"]
    extended = extend(str(model), winner["method"], target_context=winner["served_context"], params=winner["params"],
                      original_context=original_context, output=dest, force=force)
    out = Path(extended["output"])
    document["seconds"] = round(time.perf_counter() - started, 2)
    document["output"] = str(out)
    document["warnings"] = extended["warnings"]
    document["config_sha256"] = config_fingerprint(out)  # which config the winner is (the model card checks it)
    document["tune_json"] = str(report.write_result(out, document))
    plot = report.write_plot(out, document)
    document["plot"] = str(plot) if plot else None
    document["extend"] = {k: extended[k] for k in ("output", "served_context", "warnings", "config_diff") if k in extended}
    return document


def _default_row(space: Space, trials: list[dict]) -> dict | None:
    values, _ = space.default()
    for row in trials:
        if row["state"] in ("complete", "pruned") and all(
                math.isclose(row["params"].get(k, math.nan), v, rel_tol=1e-9) for k, v in values.items()):
            return row
    return None


def _safe_storage(url: str) -> str:
    """A database URL without its password."""
    return re.sub(r"//([^:/@]+):[^@]+@", r"//\1:***@", url)


def _guarded(body, device: str):
    from ropeconv.probe import _guarded as probe_guarded

    return probe_guarded(body, "measuring a candidate", device)
