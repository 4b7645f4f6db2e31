"""Running the checks: on a parsed config, a model folder, or any model `ropeconv check` accepts.

`run_check` is `ropeconv check MODEL [--fix -o DIR]` as a library call; `exit_code_for` turns its result
into the CLI's exit status.
"""

from __future__ import annotations

from pathlib import Path

from ropeconv import engines as eng
from ropeconv.check.findings import CHECKS, SEVERITIES, TOKENIZER_CONFIG, Context, Finding
from ropeconv.check.gguf import check_gguf
from ropeconv.errors import EXIT_FAILED, EXIT_OK, RopeconvError
from ropeconv.families import POSITION_EXPLAINED, family_of
from ropeconv.source import read_json_object
from ropeconv.spec import RopeSpec, language_section, read_spec


def check_config(config: dict, *, folder: Path | None = None, tokenizer: dict | None = None,
                 buffers: list | None = None, original_context: int | None = None) -> dict:
    """All findings and the engine table for a parsed config.json (plus what sits beside it)."""
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
            "engines": ctx.table, "_findings": findings, "_spec": spec}


def _summary(spec: RopeSpec, ctx: Context) -> dict:
    return {"rope_type": spec.rope_type, "rope_theta": spec.theta, "rotary_dim": spec.rotary_dim,
            "original_context": spec.original_context, "max_position_embeddings": spec.max_position_embeddings,
            "served_context": ctx.served(), "config_shape": spec.shape,
            "nested_layer_types": sorted(spec.nested) if spec.nested else None}


def check_folder(folder: Path, *, original_context: int | None = None) -> dict:
    from ropeconv.buffers import find_buffers
    from ropeconv.source import read_config

    config = read_config(folder)
    tokenizer = read_json_object(folder / TOKENIZER_CONFIG)
    try:
        buffers = find_buffers(folder)
    except RopeconvError:
        buffers = []
    return check_config(config, folder=folder, tokenizer=tokenizer, buffers=buffers,
                        original_context=original_context)


def counts(findings: list[dict]) -> dict:
    return {s: sum(f["severity"] == s for f in findings) for s in SEVERITIES}


def run_check(model: str, *, original_context: int | None = None, fix: bool = False, output: Path | None = None,
              force: bool = False) -> dict:
    """`ropeconv check MODEL [--fix -o DIR]` as a library call; the result is JSON-able."""
    from ropeconv.source import resolve

    source = resolve(model, need="headers")
    if source.kind == "gguf":
        result = check_gguf(source.path)
    else:
        result = check_folder(source.path, original_context=original_context)
    result = {"source": source.to_dict(), **result}
    if fix:
        from ropeconv.check.fix import apply_fixes  # fix.py imports this module (it re-checks the result)

        if output is None:
            raise RopeconvError("--fix needs an output folder", "pass -o DIR (the source is never modified)")
        if source.kind == "gguf":
            raise RopeconvError("--fix does not rewrite GGUF files", "fix the Hugging Face model and convert again")
        result["fix"] = apply_fixes(source.path, result["_findings"], result["_spec"], Path(output), force=force,
                                    original_context=original_context)
    result.pop("_findings", None)
    result.pop("_spec", None)
    result["counts"] = counts(result["findings"])
    result["exit_code"] = exit_code_for(result)
    return result


def exit_code_for(result: dict) -> int:
    findings = result.get("fix", {}).get("after", {}).get("findings") if result.get("fix") else None
    return EXIT_FAILED if any(f["severity"] == "error" for f in (findings if findings is not None
                                                                 else result["findings"])) else EXIT_OK


def list_checks() -> list[dict]:
    return [{"check": cid, "summary": summary} for cid, summary, _ in CHECKS]
