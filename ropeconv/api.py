"""The library API the CLI, recipes, batch, tune and tests call: `extend` and `inspect`.

`extend` reads top to bottom as the conversion does: locate the model → read its RoPE → plan →
format adapter → write. Results are plain JSON-able dicts (the CLI's --json prints them as they are).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import math
from pathlib import Path
from typing import Any, Callable

from ropeconv.buffers import Buffer, bin_files_with_buffers, buffers_in_headers, find_buffers
from ropeconv.errors import RopeconvError
from ropeconv.formats.hf import FolderPlan, plan_config, plan_folder
from ropeconv.launch import extend_section, from_config
from ropeconv.methods import unscaled
from ropeconv.output import FilePlan, check_destination, default_output_name, dump_json, json_indent, write_model
from ropeconv.plan import conversion_summary, conversion_view
from ropeconv.record import read_folder_record, read_folder_record_json, read_spec_with_record
from ropeconv.request import ConversionRequest, parse_token_field
from ropeconv.folder import Source, read_config
from ropeconv.source import resolve


def extend(model: str, request: ConversionRequest | str, *, advance: Callable[[int], None] | None = None,
           **options: Any) -> dict:
    """Extend MODEL's context as `request` asks (or build one: `extend(model, "yarn", factor=4)`).
    Returns a report; writes nothing on a dry run."""
    if not isinstance(request, ConversionRequest):
        request = ConversionRequest.build(request, **options)
    source = resolve(model, need="headers" if request.dry_run else "weights")
    if source.kind == "gguf":
        from ropeconv.formats.gguf import extend_gguf  # the GGUF reader is only loaded for GGUF files

        return extend_gguf(source.path, request, progress=advance)
    folder = source.path
    config = read_config(folder)
    earlier = read_folder_record(folder)
    files = plan_folder(folder, config, request, earlier.base if earlier else None, source_buffers(source),
                        bin_files_with_buffers(folder), _record_source(source, folder))
    dest = request.output or default_output(source, request.method, files.conversion.rope.factor)
    report = _extend_report(source, folder, dest, files, request)
    if request.dry_run:  # says where it would write; an existing output is reported, not refused
        report["output_exists"] = dest.exists()
        return report
    check_destination(folder, dest, request.force)
    write = FilePlan(json_files=files.json_files,
                     shard_writers={name: functools.partial(rw.write, folder) for name, rw in files.rewrites.items()})
    report["files"] = write_model(folder, dest, write, force=request.force, copy=request.copy,
                                  advance=advance).to_dict()
    report["files"]["written_json"] = sorted(files.json_files)  # config.json, the record, …: new content
    return report


def default_output(source: Source, method: str, factor: float) -> Path:
    name = default_output_name((source.repo_id.split("/")[-1] if source.repo_id else source.path.name), method, factor)
    return Path(name) if source.kind == "hub" else source.path.absolute().parent / name


def _extend_report(source: Source, folder: Path, dest: Path, files: FolderPlan, request: ConversionRequest) -> dict:
    conversion = files.conversion
    return {
        "source": source.to_dict(),
        "output": str(dest.absolute()),
        **conversion_summary(conversion.rope, conversion.before, conversion.after),
        "config_diff": _diff(folder / "config.json", conversion.config),
        "tokenizer_model_max_length": files.tokenizer_max_length,
        "buffers": {"mode": request.buffers, "found": [b.to_dict() for b in files.buffers_found],
                    "pickled_shards": files.pickled_shards, "changed": files.buffers_changed},
        "warnings": conversion.rope.warnings,
        # per-engine launch lines and the verified rules of releases that read this output differently
        **extend_section(from_config(conversion.config, conversion.rope.method, conversion.rope.factor,
                                     conversion.rope.original_context, conversion.rope.served_context,
                                     conversion.before.model_type, conversion.after.theta), str(dest)),
        "dry_run": request.dry_run,
    }


def config_fingerprint(folder: Path) -> str:
    return "sha256:" + hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()


def _record_source(source: Source, folder: Path) -> dict:
    """What ropeconv.json says about where the model came from."""
    src = source.to_dict()
    if source.kind == "hub":
        src.pop("path")  # a local cache path (with the user's home) has no place in a pushed file
    src["config_sha256"] = config_fingerprint(folder)
    return src


def _diff(path: Path, new_config: dict) -> list[str]:
    old = path.read_text(encoding="utf-8")
    new = dump_json(new_config, json_indent(path))
    return list(difflib.unified_diff(old.splitlines(), new.splitlines(), "config.json", "config.json (new)",
                                     lineterm="", n=1))


def inspect(model: str, *, method: str | None = None, factor: Any = None, target_context: Any = None,
            original_context: Any = None, params: dict | None = None) -> dict:
    """Explain MODEL's RoPE setup; with `method`, what a conversion would do per dimension."""
    request = None
    if method:
        request = ConversionRequest.build(method, factor=factor, target_context=target_context,
                                          original_context=original_context, params=params, rebase=True)
        original_context = request.original_context
    elif original_context is not None:
        original_context = parse_token_field("original_context", original_context)
    source = resolve(model, need="headers")
    if source.kind == "gguf":
        from ropeconv.formats.gguf import inspect_gguf

        return inspect_gguf(source.path, request, original_context=original_context)
    config = read_config(source.path)
    spec = read_spec_with_record(source.path, config, original_context)
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
    record_json = read_folder_record_json(source.path)
    if record_json:
        result["ropeconv_record"] = {k: record_json.get(k) for k in ("method", "factor", "ropeconv_version", "source")}
    if request is not None:
        earlier = read_folder_record(source.path)
        conversion = plan_config(config, request, earlier.base if earlier else None)
        result["conversion"] = conversion_view(dims, base_inv, conversion.rope, conversion.after)
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
