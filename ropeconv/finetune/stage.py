"""The staging folder beside the destination (`DIR.finetune-tmp`): the extended model training starts
from, the Trainer's checkpoints, and the evaluation before training. It survives a kill, so the same
command run again (or with --resume) continues; it is removed after the output is in place."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ropeconv.errors import RopeconvError
from ropeconv.finetune.settings import FinetuneSettings

STAGING_SUFFIX = ".finetune-tmp"
SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class Plan:
    """The model training starts from, as planned before anything is written."""

    source_folder: Path
    source_kind: str  # "unscaled" (extended here) or "ropeconv-output" (its scaling kept)
    method: str
    factor: float
    original_context: int
    target: int
    unscaled_folder: Path | None  # what "unscaled" is measured on (None: not available)
    warnings: tuple[str, ...] = ()  # the extension's, as `extend` reports them


@dataclass(frozen=True)
class Staging:
    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def eval_before(self) -> Path:
        return self.root / "eval_before.json"


def staging_for(dest: Path) -> Staging:
    dest = dest.absolute()
    return Staging(dest.parent / (dest.name + STAGING_SUFFIX))


def conversion_request(settings: FinetuneSettings, output: Path | None = None, dry_run: bool = False):
    from ropeconv.request import ConversionRequest

    return ConversionRequest.build(settings.method, factor=settings.factor, target_context=settings.target_context,
                                   original_context=settings.original_context, params=settings.params,
                                   output=output, force=True, dry_run=dry_run)


def plan_start(model: str, settings: FinetuneSettings) -> Plan:
    """Where training starts: an unscaled model is extended as `extend` would (its refusals and warnings
    included, dry run here), a ropeconv output keeps its scaling."""
    from ropeconv.probe import open_model_folder
    from ropeconv.record import read_folder_record

    source, folder, config, spec = open_model_folder(model, None, "finetune")
    record = read_folder_record(folder)
    if spec.rope_type != "default" or record is not None:
        if settings.method:
            raise RopeconvError(f"{folder.name} is already scaled ({spec.rope_type} ×{spec.factor:g}); finetune "
                                "keeps its scaling", "leave out --method/--factor/--target-context")
        recorded = Path(str(record.source.get("path"))) if record and record.source.get("path") else None
        return Plan(folder, "ropeconv-output", spec.rope_type, float(spec.factor or 1), spec.original_context,
                    spec.served_context(), recorded if recorded and recorded.is_dir() else None)
    if not settings.method:
        raise RopeconvError(f"{folder.name} is not extended: say to what", "pass --method yarn and --factor 4 "
                            "(or --target-context 32k), or give a ropeconv extend output")
    from ropeconv import api

    report = api.extend(str(folder), conversion_request(settings, dry_run=True))
    return Plan(folder, "unscaled", report["method"], float(report["factor"]),
                int(report["after"]["original_context"]), int(report["served_context"]), folder,
                tuple(report["warnings"]))


def prepare(plan: Plan, settings: FinetuneSettings, staging: Staging) -> bool:
    """Create the staging folder (the extended model in it), or find the one a killed run left.
    Returns True when an earlier run's staging folder is continued."""
    wanted = {**settings.fingerprint(), "source": str(plan.source_folder)}
    found = _read_settings(staging.root)
    if found is not None and found == wanted and (staging.model / "config.json").is_file():
        return True
    if settings.resume:
        raise RopeconvError(f"--resume found no run to continue in {staging.root}" if found is None else
                            f"{staging.root} holds a run with other settings",
                            "run without --resume to start afresh (or with the options of the earlier run)")
    if staging.root.exists():
        shutil.rmtree(staging.root)  # a run with other settings, or cut short before its model was staged
    staging.root.mkdir(parents=True)
    if plan.source_kind == "unscaled":
        from ropeconv import api

        api.extend(str(plan.source_folder), conversion_request(settings, output=staging.model))
    else:  # the ropeconv output as it is (hard links)
        from ropeconv.output import FilePlan, write_model

        write_model(plan.source_folder, staging.model, FilePlan())
    (staging.root / SETTINGS_FILE).write_text(json.dumps(wanted, indent=2), encoding="utf-8")
    return False


def _read_settings(root: Path) -> dict | None:
    try:
        return json.loads((root / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
