"""The library API the CLI, recipes and tests call: `extend` and `inspect`.

Results are plain JSON-able dicts (the CLI's --json prints them as they are).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable

from ropeconv import __version__
from ropeconv.buffers import (INDEX_NAME, Buffer, bin_files_with_buffers, buffer_values, buffers_in_headers,
                              find_buffers, rewrite_shard)
from ropeconv.errors import RopeconvError
from ropeconv.methods import get_method, unscaled
from ropeconv.output import FilePlan, check_destination, dump_json, json_indent, write_model
from ropeconv.plan import Plan, conversion_summary, conversion_view, plan_extension
from ropeconv.source import Source, read_config, read_json_object, resolve
from ropeconv.spec import read_spec

RECORD_NAME = "ropeconv.json"
BUFFER_MODES = ("rewrite", "drop", "keep")
TOKENIZER_CONFIG = "tokenizer_config.json"


def config_fingerprint(folder: Path) -> str:
    return "sha256:" + hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()


def read_record(folder: Path) -> dict | None:
    """ropeconv.json of an earlier conversion, if the folder is a ropeconv output."""
    return read_json_object(folder / RECORD_NAME)


def _unscaled_base(record: dict | None) -> dict | None:
    """θ and L0 before an earlier ropeconv conversion (so NTK's new θ is known to be scaled)."""
    base = record.get("base") or record.get("before") if record else None
    if not isinstance(base, dict) or base.get("rope_theta") is None:
        return None
    return {"method": record.get("method", "?"), "rope_theta": base["rope_theta"],
            "original_context": base.get("original_context")}


def default_output(source: Source, method: str, factor: float) -> Path:
    name = (source.repo_id.split("/")[-1] if source.repo_id else source.path.name) or "model"
    suffix = f"{name}-{method}-x{factor:g}"
    return Path(suffix) if source.kind == "hub" else source.path.absolute().parent / suffix


def extend(model: str, method: str, *, factor: Any = None, target_context: Any = None,
           original_context: int | None = None, params: dict | None = None, output: str | Path | None = None,
           buffers: str = "rewrite", copy: bool = False, force: bool = False, rebase: bool = False,
           dry_run: bool = False, advance: Callable[[int], None] | None = None) -> dict:
    """Extend MODEL's context with `method`. Returns a report; writes nothing when dry_run."""
    get_method(method)
    if buffers not in BUFFER_MODES:
        raise RopeconvError(f"--buffers {buffers!r} is not one of {', '.join(BUFFER_MODES)}",
                            "rewrite (default), drop or keep")
    source = resolve(model, need="headers" if dry_run else "weights")
    if source.kind == "gguf":
        from ropeconv import gguf_io

        # --buffers and --copy have no meaning for a single GGUF file
        return gguf_io.extend_gguf(source.path, method, factor=factor, target_context=target_context,
                                   original_context=original_context, params=params, output=output,
                                   force=force, dry_run=dry_run, rebase=rebase, progress=advance)
    folder = source.path
    config = read_config(folder)
    record = read_record(folder)
    plan = plan_extension(config, method, factor=factor, target_context=target_context,
                          original_context=original_context, params=params, rebase=rebase,
                          unscaled_base=_unscaled_base(record))
    dest = Path(output) if output else default_output(source, method, plan.factor)
    check_destination(folder, dest, force)

    found = source_buffers(source)
    pickled = bin_files_with_buffers(folder)
    files = FilePlan(json_files={"config.json": plan.config})
    tokenizer = _tokenizer_patch(folder, plan.served_context)
    if tokenizer is not None:
        files.json_files[TOKENIZER_CONFIG] = tokenizer
    changed = _plan_buffers(folder, found, pickled, plan, buffers, files)

    report = {
        "source": source.to_dict(),
        "output": str(dest.absolute()),
        **conversion_summary(plan),
        "config_diff": _diff(folder / "config.json", plan.config),
        "tokenizer_model_max_length": tokenizer.get("model_max_length") if tokenizer else None,
        "buffers": {"mode": buffers, "found": [b.to_dict() for b in found], "pickled_shards": pickled,
                    "changed": changed},
        "warnings": plan.warnings,
        "dry_run": dry_run,
    }
    if dry_run:
        return report
    files.json_files[RECORD_NAME] = _record(source, folder, plan, buffers, changed)
    written = write_model(folder, dest, files, force=force, copy=copy, advance=advance)
    report["files"] = written.to_dict()
    return report


def _tokenizer_patch(folder: Path, context: int) -> dict | None:
    tok = read_json_object(folder / TOKENIZER_CONFIG)
    limit = tok.get("model_max_length") if tok else None
    if isinstance(limit, (int, float)) and limit < context:
        tok["model_max_length"] = context  # tokenizers truncate at it; older vLLM capped the served length
        return tok
    return None


def _plan_buffers(folder: Path, found: list[Buffer], pickled: list[str], plan: Plan, mode: str,
                  files: FilePlan) -> list[str]:
    """Add the shard rewrites `mode` asks for to `files`; return the buffer names that change."""
    if mode == "keep" or not (found or pickled):
        return []
    if pickled:
        _plan_pickled(folder, pickled, plan, mode, files)
    by_file: dict[str, list[Buffer]] = {}
    for buf in found:
        by_file.setdefault(buf.file, []).append(buf)
    for name, bufs in by_file.items():
        if mode == "drop":
            drop, replace = {b.name for b in bufs}, {}
        else:
            drop, replace = set(), {b.name: buffer_values(b, plan.inv_freq, plan.attention_factor) for b in bufs}
        files.shard_writers[name] = (lambda src, r, d: lambda dst: rewrite_shard(src, dst, r, d))(
            folder / name, replace, drop)
    if mode == "drop" and (folder / INDEX_NAME).is_file():
        index = json.loads((folder / INDEX_NAME).read_text(encoding="utf-8"))
        dropped = {b.name for b in found}
        index["weight_map"] = {k: v for k, v in index["weight_map"].items() if k not in dropped}
        files.json_files[INDEX_NAME] = index
    return [b.name for b in found] + [f"{n}:*rotary buffers" for n in pickled]


def _plan_pickled(folder: Path, pickled: list[str], plan: Plan, mode: str, files: FilePlan) -> None:
    """.bin shards holding buffers: loaded with weights_only=True (never arbitrary unpickling)."""

    def writer(src: Path):
        def write(dst: Path) -> None:
            import torch

            from ropeconv.buffers import buffer_kind

            state = torch.load(src, map_location="cpu", weights_only=True, mmap=True)
            for key in [k for k in state if buffer_kind(k)]:
                if mode == "drop":
                    del state[key]
                    continue
                buf = Buffer(src.name, key, buffer_kind(key), "F32", tuple(state[key].shape))
                dtype, raw = buffer_values(buf, plan.inv_freq, plan.attention_factor)
                kept_dtype = torch.float32 if buf.kind == "inv_freq" else state[key].dtype
                state[key] = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(buf.shape).to(kept_dtype)
            torch.save(state, dst)

        return write

    for name in pickled:
        files.shard_writers[name] = writer(folder / name)


def _record(source: Source, folder: Path, plan: Plan, buffers: str, changed: list[str]) -> dict:
    src = source.to_dict()
    if source.kind == "hub":
        src.pop("path")  # a local cache path (with the user's home) has no place in a pushed file
    src["config_sha256"] = config_fingerprint(folder)
    return {
        "ropeconv_version": __version__,
        "source": src,
        "method": plan.method,
        "factor": plan.factor,
        "params": plan.params,
        "original_context": plan.original_context,
        "base": {"rope_theta": plan.base_theta, "original_context": plan.original_context},
        "served_context": plan.served_context,
        "buffers": {"mode": buffers, "changed": changed},
        "before": plan.before.to_dict(),
        "after": plan.after.to_dict(),
    }


def _diff(path: Path, new_config: dict) -> list[str]:
    old = path.read_text(encoding="utf-8")
    new = dump_json(new_config, json_indent(path))
    return list(difflib.unified_diff(old.splitlines(), new.splitlines(), "config.json", "config.json (new)",
                                     lineterm="", n=1))


def inspect(model: str, *, method: str | None = None, factor: Any = None, target_context: Any = None,
            original_context: int | None = None, params: dict | None = None) -> dict:
    """Explain MODEL's RoPE setup; with `method`, what a conversion would do per dimension."""
    source = resolve(model, need="headers")
    if source.kind == "gguf":
        from ropeconv import gguf_io

        return gguf_io.inspect_gguf(source.path, method=method, factor=factor, params=params,
                                    target_context=target_context, original_context=original_context)
    config = read_config(source.path)
    spec = read_spec(config, original_context=original_context)
    base_inv, _ = unscaled(spec.basis())
    current_inv, current_attention = spec.inv_freq()
    dims = [
        {"pair": j, "inv_freq": cur, "wavelength": 2 * math.pi / cur,
         "wavelength_over_L0": (2 * math.pi / b) / spec.original_context,
         "current_scale": b / cur}
        for j, (b, cur) in enumerate(zip(base_inv, current_inv))
    ]
    result: dict = {"source": source.to_dict(), "spec": spec.to_dict(), "dimensions": dims,
                    "buffers": _buffers_or_note(source), "warnings": list(spec.warnings),
                    "findings": _findings(source.path, original_context)}
    record = read_record(source.path)
    if record:
        result["ropeconv_record"] = {k: record.get(k) for k in ("method", "factor", "ropeconv_version", "source")}
    if method:
        plan = plan_extension(config, method, factor=factor, target_context=target_context,
                              original_context=original_context, params=params, rebase=True,
                              unscaled_base=_unscaled_base(record))
        result["conversion"] = conversion_view(dims, base_inv, plan)
    return result


def _findings(folder: Path, original_context: int | None) -> list[dict]:
    """The config mistakes `ropeconv check` knows (errors and warnings only), for inspect to show."""
    from ropeconv.check import check_folder

    found = check_folder(folder, original_context=original_context)["findings"]
    return [f for f in found if f["severity"] in ("error", "warning")]


def source_buffers(source: Source) -> list[Buffer]:
    """Stored rotary buffers, from local shard headers or (Hub source not downloaded) remote ones."""
    if source.kind == "hub":
        from ropeconv.hub import shard_headers

        return buffers_in_headers(shard_headers(source))
    return find_buffers(source.path)


def _buffers_or_note(source: Source) -> list[dict]:
    try:
        return [b.to_dict() for b in source_buffers(source)]
    except RopeconvError as exc:
        return [{"error": exc.line()}]
