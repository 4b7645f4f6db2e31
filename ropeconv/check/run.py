"""Running the checks: on a parsed config, a model folder, or any model `ropeconv check` accepts.

`run_check` is `ropeconv check MODEL [--fix -o DIR]` as a library call; `exit_code_for` turns its result
into the CLI's exit status.
"""

from __future__ import annotations

from pathlib import Path

from ropeconv.check.config import check_folder, counts
from ropeconv.check.findings import CHECKS
from ropeconv.check.fix import apply_fixes
from ropeconv.check.gguf import check_gguf
from ropeconv.errors import EXIT_FAILED, EXIT_OK, RopeconvError


def run_check(model: str, *, original_context: int | None = None, fix: bool = False, output: Path | None = None,
              force: bool = False) -> dict:
    """`ropeconv check MODEL [--fix -o DIR]` as a library call; the result is JSON-able."""
    from ropeconv.source import resolve

    if output is not None and not fix:  # -o alone would look like it wrote something
        raise RopeconvError("-o/--output only names where --fix writes", "add --fix to write a fixed copy there, "
                            "or drop -o to only check")
    source = resolve(model, need="headers")
    if source.kind == "gguf":
        result = check_gguf(source.path)
    else:
        result = check_folder(source.path, original_context=original_context,
                              model=source.repo_id or str(source.path))
    result = {"source": source.to_dict(), **result}
    if fix:
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
