"""The search: an Optuna study over a method's `Space`, stored in SQLite (or any storage URL
Optuna takes) so that a killed run resumes and several processes share one study.

- One study per (model config, method, target, text, short window and bound, seed, space, mode):
  its name is derived from them, so the same command run again resumes the same study, and a
  second process started with the same arguments and `worker=True` evaluates trials of it.
- The budget counts finished trials (complete + pruned) of the whole study, over resumes and
  workers (Optuna's MaxTrialsCallback); a trial a killed process left running is marked failed by
  the storage heartbeat and does not count.
- Samplers are seeded: TPE (multivariate) by default, NSGA-II for `pareto` (two objectives: loss
  past L0 and the short-context ratio), random, or CMA-ES (needs the `cmaes` package).
- The method's defaults (for longrope: the PI, NTK and YaRN factors) are enqueued as the first
  trials of a new study.

optuna is imported inside the functions: the CLI's --help must not pay for it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import time
from dataclasses import dataclass, field
from typing import Any

from ropeconv.errors import RopeconvError
from ropeconv.methods import Basis
from ropeconv.tune.progress import Tracker
from ropeconv.tune.space import Space, candidate_from_params
from ropeconv.tune.storage import StorageTarget, is_creation_race, open_failure

SAMPLERS = ("tpe", "random", "cmaes")
SEED_LIMIT = 2**32  # numpy's seeds (behind every Optuna sampler) are 0 … 2**32 − 1
HEARTBEAT_S = 30  # a running trial updates the storage this often; stale after GRACE_S
GRACE_S = 120


@dataclass
class SearchSettings:
    budget: int | None = 20
    time_limit: float | None = None  # seconds
    seed: int = 0
    sampler: str = "tpe"
    pareto: bool = False
    prune: bool = False
    max_short_ratio: float = 1.25
    worker: bool = False


@dataclass
class SearchOutcome:
    study_name: str
    trials: list[dict] = field(default_factory=list)
    best: dict | None = None
    front: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    finished_here: int = 0


def study_name(*, fingerprint: str, method: str, target: int, text_sha: str, short_length: int, bound: float,
               seed: int, portable: bool, pareto: bool, sampler: str, prune: bool) -> str:
    key = f"{fingerprint}|{method}|{target}|{text_sha}|{short_length}|{bound:g}|{seed}|{portable}|{pareto}|{sampler}|{prune}"
    return f"ropeconv-tune-{method}-{target}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def require_optuna() -> None:
    if importlib.util.find_spec("optuna") is None:
        raise RopeconvError("tune needs the optuna library", 'run: pip install "ropeconv[tune]"')


def require_sampler(settings: SearchSettings) -> None:
    """A sampler's own package, checked before anything is created."""
    if settings.sampler not in SAMPLERS:
        raise RopeconvError(f"--sampler {settings.sampler!r} is not one of {', '.join(SAMPLERS)}",
                            "use tpe (default), random or cmaes")
    if settings.sampler == "cmaes" and not settings.pareto and importlib.util.find_spec("cmaes") is None:
        raise RopeconvError("--sampler cmaes needs the cmaes package, which is not installed",
                            "run: pip install cmaes (or use --sampler tpe)")


def open_study(name: str, target: StorageTarget, settings: SearchSettings):
    """The study `name` in the checked storage `target`, created when missing. Two processes starting
    together may both try to create the schema or the study: the loser retries and loads it; any other
    failure is worded at once (storage.open_failure), never retried."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for attempt in range(6):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental", the retry callback renamed in 4.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", FutureWarning)
                storage = _storage(target.url)
                sampler = make_sampler(settings, _trial_count(storage, name))
            pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0) if settings.prune
                      else optuna.pruners.NopPruner())
            directions = ["minimize", "minimize"] if settings.pareto else ["minimize"]
            return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                       directions=directions, load_if_exists=True)
        except RopeconvError:
            raise
        except Exception as exc:
            if attempt == 5 or not is_creation_race(exc):
                raise open_failure(exc, target) from None
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _trial_count(storage, name: str) -> int:
    try:
        return len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    except KeyError:  # a new study
        return 0


def _storage(storage_url: str):
    import inspect

    from optuna import storages

    # a trial left running by a killed process is retried once (callback and argument renamed in 4.9)
    modern = "heartbeat_stale_trial_callback" in inspect.signature(storages.RDBStorage.__init__).parameters
    retry_type = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) if modern else None
    retry = (retry_type or storages.RetryFailedTrialCallback)(max_retry=1)
    engine = {"connect_args": {"timeout": 60}} if storage_url.startswith("sqlite") else None
    return storages.RDBStorage(storage_url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, engine_kwargs=engine,
                               **{"heartbeat_stale_trial_callback" if modern else "failed_trial_callback": retry})


def make_sampler(settings: SearchSettings, done: int = 0):
    """The seeded sampler. `done` (trials already in the study) shifts the seed: a resumed run or a
    second worker with the seed alone would replay the first run's random start-up samples."""
    import optuna

    # kept in the samplers' range (numpy seeds are 32-bit) however many trials the study holds
    seed = (settings.seed + done + (_worker_offset() if settings.worker else 0)) % SEED_LIMIT

    require_sampler(settings)
    if settings.pareto:
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)


def _worker_offset() -> int:
    """Workers of one study sample different points even when they start together."""
    return int(hashlib.sha256(worker_id().encode()).hexdigest()[:6], 16)


def finished_count(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def search(space: Space, evaluator, study, settings: SearchSettings, tracker: Tracker | None = None) -> SearchOutcome:
    """Run trials of the opened `study` until it has `budget` finished trials or `time_limit` passes."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    started = time.perf_counter()
    if not study.get_trials(deepcopy=False):  # a new study starts from the method's defaults
        for values, _ in space.seeds():
            study.enqueue_trial(values, skip_if_exists=True)
    rungs = rung_lengths(evaluator.basis, evaluator.target) if settings.prune else ()
    finished_before = finished_count(study)

    def objective(trial):
        trial.set_user_attr("worker", worker_id())  # who runs it, while it runs
        if tracker is not None:
            tracker.trial_started(finished_count(study))
        candidate = space.suggest(trial)
        pruned_at: list[int] = []

        def on_rung(length: int, value: float) -> bool:
            trial.report(value, step=length)
            if trial.should_prune():
                pruned_at.append(length)
                return True
            return False

        bound = None if settings.pareto else settings.max_short_ratio
        result = evaluator.measure(candidate, max_short_ratio=bound, rungs=rungs, on_rung=on_rung)
        record_trial(trial, candidate, result)
        if result.long is None:
            trial.set_user_attr("stopped", "pruned" if pruned_at else "short_context_bound")
            raise optuna.TrialPruned()
        objective_value = result.long.mean_nll_beyond
        if settings.pareto:
            return objective_value, result.short_ratio
        return objective_value

    def after_trial(study, trial) -> None:
        if tracker is None:
            return
        best = best_trial(study, settings)
        long_seconds = trial.user_attrs.get("target_seconds")
        tracker.trial_finished(finished_count(study), trial.user_attrs.get("seconds") or 0.0,
                               best["past_ppl"] if best else None, long_seconds)

    remaining = None if settings.budget is None else settings.budget - finished_before
    if remaining is None or remaining > 0:
        callbacks: list[Any] = [after_trial]
        if settings.budget is not None:
            callbacks.insert(0, MaxTrialsCallback(settings.budget, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        study.optimize(objective, n_trials=remaining, timeout=settings.time_limit, callbacks=callbacks,
                       catch=(), gc_after_trial=False)
    outcome = SearchOutcome(study.study_name, seconds=round(time.perf_counter() - started, 2),
                            finished_here=finished_count(study) - finished_before)
    outcome.trials = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    outcome.best = best_trial(study, settings)
    if settings.pareto:
        outcome.front = [trial_row(t) for t in study.best_trials]
    return outcome


def rung_lengths(basis: Basis, target: int) -> tuple[int, ...]:
    """With pruning: one shorter window half-way between L0 and the target, where a hopeless
    candidate already shows (and is stopped before the full window)."""
    L0 = basis.original_context
    mid = L0 + (target - L0) // 2
    return (mid,) if L0 < mid < target else ()


def worker_id() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def record_trial(trial, candidate, result) -> None:
    trial.set_user_attr("worker", worker_id())
    trial.set_user_attr("candidate", candidate.to_dict())
    trial.set_user_attr("short_ppl", result.short.ppl)
    trial.set_user_attr("short_ratio", result.short_ratio)
    trial.set_user_attr("seconds", result.seconds)
    tokens = result.short.length + sum(r.length for r in result.rungs) + (result.long.length if result.long else 0)
    trial.set_user_attr("tokens_per_second", round(tokens / result.seconds, 1) if result.seconds else None)
    trial.set_user_attr("rungs", [[r.length, r.ppl_beyond] for r in result.rungs])
    if result.long is not None:
        trial.set_user_attr("target_seconds", result.long.seconds)
        trial.set_user_attr("past_ppl", result.long.ppl_beyond)
        trial.set_user_attr("ppl", result.long.ppl)
        trial.set_user_attr("buckets", [list(b) for b in result.long.buckets])


def trial_row(trial) -> dict:
    attrs = trial.user_attrs
    values = trial.values if trial.values is not None else None
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": dict(trial.params),
        "candidate": attrs.get("candidate"),
        "objective": values,
        "past_ppl": attrs.get("past_ppl"),
        "short_ppl": attrs.get("short_ppl"),
        "short_ratio": attrs.get("short_ratio"),
        "stopped": attrs.get("stopped"),
        "rungs": attrs.get("rungs"),
        "buckets": attrs.get("buckets"),
        "seconds": attrs.get("seconds"),
        "tokens_per_second": attrs.get("tokens_per_second"),
        "worker": attrs.get("worker"),
        "started": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "finished": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
    }


def best_trial(study, settings: SearchSettings) -> dict | None:
    """The complete trial with the lowest loss past L0 whose short-context ratio is within the bound."""
    from optuna.trial import TrialState

    feasible = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("short_ratio", math.inf) <= settings.max_short_ratio and t.values]
    if not feasible:
        return None
    return trial_row(min(feasible, key=lambda t: (t.values[0], t.number)))


def candidate_of(space: Space, row: dict):
    return candidate_from_params(space, row["params"])
