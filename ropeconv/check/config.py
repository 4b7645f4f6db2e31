"""Checking a parsed config.json or a model folder: every check, and the engine table.

`check_config` runs the registered checks on a config (plus what sits beside it); `check_folder` reads a
folder first. Both `run` (the command as a library call) and `fix` (which re-checks what it wrote) use
them, so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

from ropeconv import engines as eng
from ropeconv.check.findings import CHECKS, SEVERITIES, TOKENIZER_CONFIG, Context, Finding
from ropeconv.errors import RopeconvError
from ropeconv.families import POSITION_EXPLAINED, family_of
from ropeconv.folder import read_json_object
from ropeconv.record import recorded_original_context
from ropeconv.spec import RopeSpec, language_section, read_spec


def check_config(config: dict, *, folder: Path | None = None, tokenizer: dict | None = None,
                 buffers: list | None = None, original_context: int | None = None, model: str = "MODEL") -> dict:
    """All findings, the engine table and the serve lines for a parsed config.json (plus what sits beside
    it); `model` is the path or repo id the serve lines name."""
    try:
        spec = read_spec(config, original_context=original_context)
        defaulted = spec.defaulted
    except RopeconvError as exc:
        model_type = (config.get("model_type") or "") if isinstance(config, dict) else ""
        family = family_of(model_type)
        if family and family.position in POSITION_EXPLAINED or "uses " in exc.problem:
            finding = Finding("not-rope", "info", "model_type", exc.problem.replace(" uses ", " uses ", 1),
                              "nothing to check: ropeconv only converts RoPE models", [])
            return {"model_type": model_type, "rope": None, "findings": [finding.to_dict()], "engines": [],
                    "_findings": [finding], "_spec": None}
        raise
    path, section = language_section(config)
    ctx = Context(config=config, spec=spec, section=section, prefix=path, folder=folder, tokenizer=tokenizer,
                  buffers=buffers)
    ctx.table = eng.engine_table(config, spec)
    findings: list[Finding] = []
    if defaulted:
        findings.append(Finding("class-defaults", "info", ctx.key(*defaulted[:1]),
                                f"config.json leaves {', '.join(defaulted)} to the {spec.model_type} class defaults; "
                                "read with transformers' defaults", "nothing to change", []))
    for _, _, fn in CHECKS:
        findings.extend(fn(ctx))
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    return {"model_type": spec.model_type, "rope": _summary(spec, ctx), "findings": [f.to_dict() for f in findings],
            "engines": ctx.table, "launch": _launch(config, spec, model), "_findings": findings, "_spec": spec}


def _launch(config: dict, spec: RopeSpec, model: str) -> list[dict]:
    """The serve line of every engine (ropeconv.launch), `needed` where the config alone falls short."""
    from ropeconv.launch import SERVE, from_config, launch_lines

    method = eng.method_of(spec)
    factor = spec.factor or spec.max_position_embeddings / spec.original_context
    conversion = from_config(config, method, factor, spec.original_context, spec.served_context(), spec.model_type,
                             spec.theta)
    return [line.to_dict() for line in launch_lines(conversion, model) if line.kind == SERVE]


def _summary(spec: RopeSpec, ctx: Context) -> dict:
    return {"rope_type": spec.rope_type, "rope_theta": spec.theta, "rotary_dim": spec.rotary_dim,
            "original_context": spec.original_context, "max_position_embeddings": spec.max_position_embeddings,
            "served_context": ctx.served(), "config_shape": spec.shape,
            "nested_layer_types": sorted(spec.nested) if spec.nested else None}


def check_folder(folder: Path, *, original_context: int | None = None, model: str | None = None) -> dict:
    from ropeconv.buffers import find_buffers
    from ropeconv.folder import read_config

    config = read_config(folder)
    if original_context is None:  # an NTK output's config no longer states L0; its record does
        original_context = recorded_original_context(folder, config)
    tokenizer = read_json_object(folder / TOKENIZER_CONFIG)
    try:
        buffers = find_buffers(folder)
    except RopeconvError:
        buffers = []
    return check_config(config, folder=folder, tokenizer=tokenizer, buffers=buffers,
                        original_context=original_context, model=model or str(folder))


def counts(findings: list[dict]) -> dict:
    return {s: sum(f["severity"] == s for f in findings) for s in SEVERITIES}
