"""The Hugging Face folder adapter: what a RoPE plan writes into config.json (and beside it).

`extend_folder` / `inspect_folder` are the entry points (as `extend_gguf` / `inspect_gguf` are the GGUF
adapter's); `plan_config` gives the new config.json; `plan_folder` the whole write plan of an output folder
(config.json, tokenizer_config.json's length cap, stored rotary buffers, ropeconv.json) as data that
`--dry-run`, reports and tests read and `output.write_model` runs (which also leaves out the files
that describe the source folder rather than the model: `output.SKIP_NAMES`).

The portability rules live here (README "What ropeconv writes"), one `HfMethod` row per method in
`HF_METHODS`: both config shapes with identical values, `rope_type` only, floats as floats, and
`max_position_embeddings` / `original_max_position_embeddings` the way each engine reads them for
that method.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ropeconv import __version__
from ropeconv.buffers import (INDEX_NAME, Buffer, bin_files_with_buffers, buffer_kind, buffer_values,
                              buffers_in_headers, find_buffers, rewrite_shard)
from ropeconv.errors import RopeconvError
from ropeconv.families import is_mla
from ropeconv.folder import Source, read_config, read_json_object
from ropeconv.launch import extend_section, from_config
from ropeconv.methods import unscaled
from ropeconv.output import FilePlan, check_destination, default_output, dump_json, json_indent, write_model
from ropeconv.plan import RopePlan, conversion_summary, conversion_view, plan
from ropeconv.record import (RECORD_NAME, Base, Record, config_fingerprint, read_folder_record,
                             read_folder_record_json, read_spec_with_record)
from ropeconv.request import ConversionRequest
from ropeconv.spec import FULL_ATTENTION, RopeSpec, read_spec
from ropeconv.tokenizer_files import portable_tokenizer_config

TOKENIZER_CONFIG = "tokenizer_config.json"


# ---------------------------------------------------------------------------------------------------------
# the method table: how config.json carries each method (one row per method; tests/test_methods.py
# fails when a convertible method has none)


def _no_warning(rope: RopePlan) -> str | None:
    return None


def _dynamic_warning(rope: RopePlan) -> str | None:
    return ("dynamic is not portable: static in SGLang, no effect in vLLM, dropped by llama.cpp and "
            "exllamav2, refused by exllamav3 (see `ropeconv methods`)")


def _yarn_warning(rope: RopePlan) -> str | None:
    if rope.params.get("attention_factor") is None:
        return None
    return ("attention_factor is written explicitly: SGLang (0.5.23, run), TGI and exllamav2 ignore "
            "it and llama.cpp recomputes it; transformers and vLLM 0.33 honour it")


@dataclass(frozen=True)
class HfMethod:
    """How config.json carries one method, for every engine that reads it."""

    rope_type: str  # the rope_type written; "default" means θ alone carries the method (ntk)
    # max_position_embeddings keeps L0 (vLLM and SGLang multiply it by `factor` themselves for linear;
    # transformers and TGI read it as the trained length for dynamic); otherwise it is L0·s
    l0_in_max: bool
    # ... unless the family publishes the scaled length there (Family.linear_max_is_scaled)
    family_may_scale_max: bool
    original_in_entry: bool  # original_max_position_embeddings inside the scaling entry
    original_at_top: bool  # ... and at top level too (llama.cpp's converter, Phi3 code and TGI read it there)
    warning: Callable[[RopePlan], str | None] = _no_warning  # what every output of this method is told

    @property
    def states_l0(self) -> bool:
        """Whether the written config still says the trained context (an NTK output keeps only θ', L0·s)."""
        return self.rope_type != "default"


HF_METHODS: dict[str, HfMethod] = {
    "linear": HfMethod("linear", l0_in_max=True, family_may_scale_max=True, original_in_entry=False,
                       original_at_top=False),
    "ntk": HfMethod("default", l0_in_max=False, family_may_scale_max=False, original_in_entry=False,
                    original_at_top=False),
    "dynamic": HfMethod("dynamic", l0_in_max=True, family_may_scale_max=False, original_in_entry=False,
                        original_at_top=False, warning=_dynamic_warning),
    "yarn": HfMethod("yarn", l0_in_max=False, family_may_scale_max=False, original_in_entry=True,
                     original_at_top=False, warning=_yarn_warning),
    "llama3": HfMethod("llama3", l0_in_max=False, family_may_scale_max=False, original_in_entry=True,
                       original_at_top=True),
    "longrope": HfMethod("longrope", l0_in_max=False, family_may_scale_max=False, original_in_entry=True,
                         original_at_top=True),
}


def hf_method(method: str) -> HfMethod:
    row = HF_METHODS.get(method)
    if row is None:  # a method added to methods.METHODS without its row here
        raise RopeconvError(f"ropeconv cannot write {method} into config.json yet (no row in HF_METHODS)",
                            "choose another method")
    return row


@dataclass(frozen=True)
class ConfigPlan:
    """A conversion of one config.json: the RoPE plan, and the config before and after."""

    rope: RopePlan
    before: RopeSpec
    after: RopeSpec
    config: dict  # the whole new config.json


def plan_config(config: dict, request: ConversionRequest, earlier: Base | None = None) -> ConfigPlan:
    """The new config.json for `request`; `earlier` is the base a ropeconv record holds."""
    before = read_spec(config, original_context=request.original_context)
    rope = plan(before, request, earlier)
    row = hf_method(rope.method)
    new_config = rope_config(config, before, rope.method, rope.factor, rope.params, rope.theta,
                             rope.original_context, rope.served_context)
    after = read_spec(new_config)
    if not row.states_l0:  # the new config no longer states L0 (only θ' and L0·s); the record does
        after = read_spec(new_config, original_context=rope.original_context)
        after.original_context_source = f"{RECORD_NAME} (config.json no longer states the trained context)"
    if row.states_l0 and after.rope_type != rope.method:  # our own output must read back as written
        raise AssertionError(f"planned config reads back as {after.rope_type}, not {rope.method}")
    warning = row.warning(rope)
    if warning is not None:  # the plan is frozen: a copy carries the adapter's warning
        rope = replace(rope, warnings=[*rope.warnings, warning])
    return ConfigPlan(rope=rope, before=before, after=after, config=new_config)


@dataclass(frozen=True)
class ShardRewrite:
    """A safetensors shard streamed into the output with some buffers replaced or dropped."""

    file: str
    replace: dict[str, tuple[str, bytes]]  # tensor name -> (dtype, raw bytes)
    drop: frozenset[str]

    def write(self, source: Path, dst: Path) -> None:
        rewrite_shard(source / self.file, dst, self.replace, set(self.drop))


@dataclass(frozen=True)
class PickledRewrite:
    """A .bin shard holding rotary buffers, loaded with weights_only=True (never arbitrary unpickling)."""

    file: str
    mode: str  # "rewrite" or "drop"
    inv_freq: tuple[float, ...]
    attention_factor: float

    def write(self, source: Path, dst: Path) -> None:
        import torch

        state = torch.load(source / self.file, map_location="cpu", weights_only=True, mmap=True)
        for key in [k for k in state if buffer_kind(k)]:
            if self.mode == "drop":
                del state[key]
                continue
            buf = Buffer(self.file, key, buffer_kind(key), "F32", tuple(state[key].shape))
            _, raw = buffer_values(buf, list(self.inv_freq), self.attention_factor)
            kept_dtype = torch.float32 if buf.kind == "inv_freq" else state[key].dtype
            state[key] = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(buf.shape).to(kept_dtype)
        torch.save(state, dst)


@dataclass
class FolderPlan:
    """Everything an output folder gets besides the source's files as they are."""

    conversion: ConfigPlan
    json_files: dict[str, dict]  # name -> new content (config.json, tokenizer_config.json, index, record)
    rewrites: dict[str, ShardRewrite | PickledRewrite]  # weight file -> how it is rewritten
    buffers_found: list[Buffer]
    pickled_shards: list[str]
    buffers_changed: list[str]
    tokenizer_max_length: int | None = None
    tokenizer_class: str | None = None  # the class name written for transformers 4.x readers, when renamed
    record: Record | None = field(default=None, repr=False)


def plan_folder(folder: Path, config: dict, request: ConversionRequest, earlier: Base | None,
                buffers: list[Buffer], pickled: list[str], source: dict[str, Any]) -> FolderPlan:
    """The write plan of an output folder for `request` over the model in `folder`.

    `buffers` / `pickled` are the stored rotary buffers found (safetensors headers, .bin shards);
    `source` is what the record says about where the model came from.
    """
    conversion = plan_config(config, request, earlier)
    rope = conversion.rope
    json_files: dict[str, dict] = {"config.json": conversion.config}
    source_tokenizer = read_json_object(folder / TOKENIZER_CONFIG)
    tokenizer = _tokenizer_patch(folder, source_tokenizer, rope.served_context)
    if tokenizer is not None:
        json_files[TOKENIZER_CONFIG] = tokenizer
    rewrites, changed = _buffer_rewrites(buffers, pickled, rope, request.buffers)
    if request.buffers == "drop" and buffers and (folder / INDEX_NAME).is_file():
        index = json.loads((folder / INDEX_NAME).read_text(encoding="utf-8"))
        dropped = {b.name for b in buffers}
        index["weight_map"] = {k: v for k, v in index["weight_map"].items() if k not in dropped}
        json_files[INDEX_NAME] = index
    record = Record(
        ropeconv_version=__version__, source=source, method=rope.method, factor=rope.factor, params=rope.params,
        original_context=rope.original_context, base_theta=rope.base_theta, served_context=rope.served_context,
        buffers_mode=request.buffers, buffers_changed=changed, before=conversion.before.to_dict(),
        after=conversion.after.to_dict(), rebase=rope.rebase)
    json_files[RECORD_NAME] = record.to_json()
    return FolderPlan(conversion=conversion, json_files=json_files, rewrites=rewrites, buffers_found=buffers,
                      pickled_shards=pickled, buffers_changed=changed,
                      tokenizer_max_length=_changed(tokenizer, source_tokenizer, "model_max_length"),
                      tokenizer_class=_changed(tokenizer, source_tokenizer, "tokenizer_class"), record=record)


def _tokenizer_patch(folder: Path, tok: dict | None, context: int) -> dict | None:
    """tokenizer_config.json as the output needs it (None: copied as it is): `model_max_length` raised to
    the served context (tokenizers truncate at it; older vLLM capped the served length), and a class name
    only transformers 5 knows written as the one transformers 4.x also loads (llama.cpp's converter and
    4.x-based engines refuse the folder otherwise)."""
    if not tok:
        return None
    patched = portable_tokenizer_config(folder, tok) or dict(tok)
    limit = patched.get("model_max_length")
    if isinstance(limit, (int, float)) and limit < context:
        patched["model_max_length"] = context
    return patched if patched != tok else None


def _changed(patched: dict | None, source: dict | None, key: str):
    """The patched tokenizer config's new value of `key`, or None where the patch left it as it was."""
    if patched is None or patched.get(key) == (source or {}).get(key):
        return None
    return patched.get(key)


def _buffer_rewrites(found: list[Buffer], pickled: list[str], rope: RopePlan,
                     mode: str) -> tuple[dict[str, ShardRewrite | PickledRewrite], list[str]]:
    """The shard rewrites `mode` asks for, and the buffer names that change."""
    if mode == "keep" or not (found or pickled):
        return {}, []
    rewrites: dict[str, ShardRewrite | PickledRewrite] = {
        name: PickledRewrite(name, mode, tuple(rope.inv_freq), rope.attention_factor) for name in pickled}
    by_file: dict[str, list[Buffer]] = {}
    for buf in found:
        by_file.setdefault(buf.file, []).append(buf)
    for name, bufs in by_file.items():
        if mode == "drop":
            rewrites[name] = ShardRewrite(name, {}, frozenset(b.name for b in bufs))
        else:
            rewrites[name] = ShardRewrite(
                name, {b.name: buffer_values(b, rope.inv_freq, rope.attention_factor) for b in bufs}, frozenset())
    return rewrites, [b.name for b in found] + [f"{n}:*rotary buffers" for n in pickled]

# Keys a fixed legacy shape may leave out: L0 travels at top level there (HfMethod.original_at_top), and
# LongRoPE's factor is derived from max_position_embeddings / L0 by every reader.
LEFT_TO_TOP_LEVEL = ("rope_type", "original_max_position_embeddings", "factor")


def legacy_scaling(before: RopeSpec, entry: dict) -> dict:
    """The legacy rope_scaling for `entry`: the same values, except for families whose transformers
    4.x config class demands a fixed shape (Phi-3 LongRoPE: exactly type, short_factor, long_factor;
    OLMo 2 linear/dynamic: exactly type, factor) — `type`, not `rope_type`, is what those read."""
    keys = before.family.legacy_keys(entry["rope_type"]) if before.family else None
    if keys is None:
        return dict(entry)
    lost = [k for k in entry if k not in keys and k not in LEFT_TO_TOP_LEVEL and k not in before.extra]
    if lost:
        raise RopeconvError(f"{before.model_type} cannot carry {', '.join(lost)} with {entry['rope_type']}: "
                            f"transformers 4.x's config class accepts only type and {', '.join(keys)} in rope_scaling",
                            f"leave {', '.join(lost)} out (the method's defaults are used)")
    return {"type": entry["rope_type"], **{k: entry[k] for k in keys}}


def rope_config(config: dict, before: RopeSpec, method: str, factor: float, params: dict, theta: float,
                L0: int, served: int) -> dict:
    """A copy of config.json carrying `method` at `factor` over (θ, L0), in every shape engines read.

    `theta` is the θ to write (NTK's enlarged θ for ntk); `params` the method's normalised parameters.
    """
    row = hf_method(method)
    entry: dict[str, Any] = {"rope_type": row.rope_type}
    if row.states_l0:
        entry["factor"] = float(factor)
        entry.update(params)
    if row.original_in_entry:
        entry["original_max_position_embeddings"] = L0
    entry.update(before.extra)  # mrope_section and friends travel with the entry
    keeps_L0 = row.l0_in_max and not (row.family_may_scale_max and before.family
                                      and before.family.linear_max_is_scaled)
    return write_rope(config, before, entry, theta, L0 if keeps_L0 else served, L0, method)


def write_rope(config: dict, before: RopeSpec, entry: dict, theta: float, max_pos: int, L0: int,
               method: str) -> dict:
    """A copy of config.json with the new RoPE written in every shape the engines read."""
    new = copy.deepcopy(config)
    section = new
    for key in before.path:
        section = section[key]

    scaling = legacy_scaling(before, entry) if entry["rope_type"] != "default" or before.extra else None
    if before.nested is not None:
        if not (isinstance(section.get("rope_parameters"), dict)
                and before.scaled_layer_type in section["rope_parameters"]):
            section["rope_parameters"] = copy.deepcopy(before.nested)  # legacy-shaped source
        nested = section["rope_parameters"]
        old = nested.get(before.scaled_layer_type) or {}
        kept = {k: v for k, v in old.items() if k == "partial_rotary_factor"}
        nested[before.scaled_layer_type] = {**entry, "rope_theta": float(theta), **kept}
    else:
        old = section.get("rope_parameters") if isinstance(section.get("rope_parameters"), dict) else {}
        kept = {k: v for k, v in old.items() if k == "partial_rotary_factor"}
        section["rope_parameters"] = {"rope_type": entry["rope_type"], "rope_theta": float(theta), **kept,
                                      **{k: v for k, v in entry.items() if k != "rope_type"}}
    # Legacy readers (transformers 4.x, exllamav2, Ollama's converter): rope_scaling + top-level θ.
    if scaling is not None and before.nested is not None and before.scaled_layer_type != FULL_ATTENTION:
        scaling = None  # legacy rope_scaling only ever meant full attention
    section["rope_scaling"] = scaling
    section["rope_theta"] = float(theta)
    theta_key = before.family.theta_key if before.family else "rope_theta"
    partial_key = before.family.partial_key if before.family else "partial_rotary_factor"
    for key in {theta_key} | ({"rotary_emb_base"} & set(section)):
        section[key] = float(theta)  # e.g. GPT-NeoX reads only rotary_emb_base
    if before.partial_rotary_factor != 1.0 and not ({"partial_rotary_factor", "rotary_pct"} & set(section)):
        # rope_scaling replaces rope_parameters in transformers v5, so the fraction must be top-level too
        section[partial_key] = before.partial_rotary_factor
    head_dim_unset = section.get("head_dim") is None and (
        "head_dim" in section or bool(before.family and before.family.head_dim_none_when_absent))
    if head_dim_unset and not is_mla(before.model_type):
        # transformers' dynamic/yarn/longrope read getattr(config, "head_dim", …) and crash on None
        # (an explicit null, or a missing key the config class turns into None)
        section["head_dim"] = before.head_dim
    section["max_position_embeddings"] = int(max_pos)
    if hf_method(method).original_at_top or "original_max_position_embeddings" in section:
        section["original_max_position_embeddings"] = int(L0)
    return new




# ---------------------------------------------------------------------------------------------------------
# entry points: inspect and extend a model folder (the GGUF twins are formats.gguf's)


def extend_folder(source: Source, request: ConversionRequest, *,
                  advance: Callable[[int], None] | None = None) -> dict:
    """Write a copy of the model folder `source` whose config extends its context as `request` asks.

    Returns a report (JSON-able); writes nothing on a dry run. Raises RopeconvError for bad input;
    nothing is written then.
    """
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


def _extend_report(source: Source, folder: Path, dest: Path, files: FolderPlan, request: ConversionRequest) -> dict:
    conversion = files.conversion
    return {
        "source": source.to_dict(),
        "output": str(dest.absolute()),
        **conversion_summary(conversion.rope, conversion.before, conversion.after),
        "config_diff": _diff(folder / "config.json", conversion.config),
        "tokenizer_model_max_length": files.tokenizer_max_length,
        "tokenizer_class": files.tokenizer_class,  # renamed for transformers 4.x readers, or None
        "buffers": {"mode": request.buffers, "found": [b.to_dict() for b in files.buffers_found],
                    "pickled_shards": files.pickled_shards, "changed": files.buffers_changed},
        "warnings": conversion.rope.warnings,
        # per-engine launch lines and the verified rules of releases that read this output differently
        **extend_section(from_config(conversion.config, conversion.rope.method, conversion.rope.factor,
                                     conversion.rope.original_context, conversion.rope.served_context,
                                     conversion.before.model_type, conversion.after.theta), str(dest),
                         source.repo_id or str(source.path)),
        "dry_run": request.dry_run,
    }


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


def inspect_folder(source: Source, request: ConversionRequest | None = None, *, original_context: int | None = None,
                   findings: Callable[[Path, int | None], list[dict]] | None = None) -> dict:
    """Explain a model folder's RoPE setup; with a request, what `extend_folder` would write.
    `findings(folder, original_context)` gives the config mistakes to show (the caller's checker)."""
    config = read_config(source.path)
    spec = read_spec_with_record(source.path, config, original_context)
    base_inv, _ = unscaled(spec.basis())
    current_inv, _ = spec.inv_freq()
    dims = [
        {"pair": j, "inv_freq": cur, "wavelength": 2 * math.pi / cur,
         "wavelength_over_L0": (2 * math.pi / b) / spec.original_context,
         "current_scale": b / cur}
        for j, (b, cur) in enumerate(zip(base_inv, current_inv))
    ]
    result: dict = {"source": source.to_dict(), "spec": spec.to_dict(), "dimensions": dims,
                    "buffers": _buffers_or_note(source), "warnings": list(spec.warnings),
                    "findings": findings(source.path, original_context) if findings else []}
    record_json = read_folder_record_json(source.path)
    if record_json:
        result["ropeconv_record"] = {k: record_json.get(k) for k in ("method", "factor", "ropeconv_version", "source")}
    if request is not None:
        earlier = read_folder_record(source.path)
        conversion = plan_config(config, request, earlier.base if earlier else None)
        result["conversion"] = conversion_view(dims, base_inv, conversion.rope, conversion.after)
    return result


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
