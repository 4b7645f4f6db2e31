"""`ropeconv check --fix`: apply the findings' `patch` operations and write the fixed model.

`apply_fixes` edits config.json and tokenizer_config.json (and rewrites stored rotary buffers) into a
new folder through ropeconv's atomic output writer, then checks the result again.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ropeconv import engines as eng
from ropeconv.check.findings import CONFIG, TOKENIZER_CONFIG, Finding
from ropeconv.check.config import check_config, check_folder, counts
from ropeconv.errors import RopeconvError
from ropeconv.folder import read_json_object
from ropeconv.spec import RopeSpec, read_spec


def _apply(obj: dict, op: tuple) -> None:
    kind, _file, path, *value = op
    target = obj
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    if kind == "set":
        target[path[-1]] = copy.deepcopy(value[0])
    elif kind == "del":
        target.pop(path[-1], None)


def apply_fixes(folder: Path, findings: list[Finding], spec: RopeSpec | None, dest: Path, *, force: bool = False,
                original_context: int | None = None) -> dict:
    """Write `folder` with every automatic fix applied to `dest` (atomic; the source is untouched)."""
    from ropeconv.output import FilePlan, write_model
    from ropeconv.folder import read_config

    config = read_config(folder)
    tokenizer = read_json_object(folder / TOKENIZER_CONFIG)
    fixable = [f for f in findings if f.fixable]
    applied = {f.check for f in fixable}
    new_config = copy.deepcopy(config)
    new_tokenizer = copy.deepcopy(tokenizer) if tokenizer is not None else None
    round_findings = fixable
    for _ in range(3):  # a fix can uncover another (a corrected length moves the tokenizer cap)
        ops = [op for f in round_findings for op in f.patch if op[0] in ("set", "del")]
        if not ops:
            break
        for op in sorted(ops, key=lambda o: o[0] == "del"):  # sets first, then deletions
            if op[1] == CONFIG:
                _apply(new_config, op)
            elif op[1] == TOKENIZER_CONFIG and new_tokenizer is not None:
                _apply(new_tokenizer, op)
        again = check_config(new_config, tokenizer=new_tokenizer, original_context=original_context)["_findings"]
        round_findings = [f for f in again if f.fixable and f.check != "stored-buffers"]
        applied |= {f.check for f in round_findings}
    plan = FilePlan()
    if new_config != config:
        plan.json_files[CONFIG] = new_config
    if new_tokenizer is not None and new_tokenizer != tokenizer:
        plan.json_files[TOKENIZER_CONFIG] = new_tokenizer
    if any(op[0] == "buffers" for f in fixable for op in f.patch):
        _plan_buffer_rewrite(folder, new_config, plan, original_context)
    if not plan.json_files and not plan.shard_writers:
        raise RopeconvError("none of the findings has an automatic fix", "apply the fixes listed by hand")
    report = write_model(folder, dest, plan, force=force)
    after = check_folder(dest, original_context=original_context)
    after.pop("_findings", None)
    after.pop("_spec", None)
    return {"output": str(dest), "applied": sorted(applied),
            "not_fixed": [f.to_dict() for f in findings if not f.fixable and f.severity != "info"],
            "files": report.to_dict(), "after": {"findings": after["findings"], "counts": counts(after["findings"])}}


def _plan_buffer_rewrite(folder: Path, config: dict, plan, original_context: int | None) -> None:
    """Stored rotary buffers rewritten to what the fixed config means (the extend writer's rewrite)."""
    from functools import partial

    from ropeconv.buffers import buffer_values, find_buffers
    from ropeconv.formats.hf import ShardRewrite

    spec = read_spec(config, original_context=original_context)
    inv, attention = eng.intended(spec)
    by_file: dict[str, dict] = {}
    for buf in find_buffers(folder):
        by_file.setdefault(buf.file, {})[buf.name] = buffer_values(buf, inv, attention)
    for name, replace in by_file.items():
        plan.shard_writers[name] = partial(ShardRewrite(name, replace, frozenset()).write, folder)
