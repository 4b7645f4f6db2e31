"""The conversion record: the only reader and writer of `ropeconv.json` and of the GGUF `ropeconv.*` keys.

A record says what a ropeconv output is: where it came from, the method and factor, and — what a
later conversion needs most — the unscaled base (θ, L0) it was computed from, so an NTK-rescaled θ
counts as scaled and `--rebase` returns to the base rather than stacking.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ropeconv.errors import RopeconvError
from ropeconv.folder import read_json_object
from ropeconv.spec import RopeSpec, read_spec

RECORD_NAME = "ropeconv.json"
GGUF_PREFIX = "ropeconv."


@dataclass(frozen=True)
class Base:
    """The unscaled RoPE an output was computed from: what `--rebase` returns to."""

    method: str  # the method of the conversion that recorded this base
    rope_theta: float
    original_context: int | None


@dataclass
class Record:
    """ropeconv.json, typed. `extra` keeps sections other writers add (e.g. batch's stamp)."""

    ropeconv_version: str
    source: dict[str, Any]
    method: str
    factor: float
    params: dict[str, Any]
    original_context: int
    base_theta: float
    served_context: int
    buffers_mode: str = "rewrite"
    buffers_changed: list[str] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    rebase: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> Base:
        return Base(self.method, self.base_theta, self.original_context)

    def to_json(self) -> dict:
        return {
            "ropeconv_version": self.ropeconv_version,
            "source": self.source,
            "method": self.method,
            "factor": self.factor,
            "params": self.params,
            "original_context": self.original_context,
            "base": {"rope_theta": self.base_theta, "original_context": self.original_context},
            "served_context": self.served_context,
            "rebase": self.rebase,
            "buffers": {"mode": self.buffers_mode, "changed": self.buffers_changed},
            "before": self.before,
            "after": self.after,
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict) -> Record | None:
        """A record from ropeconv.json's content; None when it lacks what a record must have."""
        base = data.get("base") if isinstance(data.get("base"), dict) else {}
        theta = _number(base.get("rope_theta"))
        method = data.get("method")
        if theta is None or not isinstance(method, str):
            return None
        L0 = _int(base.get("original_context")) or _int(data.get("original_context"))
        buffers = data.get("buffers") if isinstance(data.get("buffers"), dict) else {}
        known = {"ropeconv_version", "source", "method", "factor", "params", "original_context", "base",
                 "served_context", "rebase", "buffers", "before", "after"}
        return cls(
            ropeconv_version=str(data.get("ropeconv_version", "?")),
            source=data["source"] if isinstance(data.get("source"), dict) else {},
            method=method,
            factor=_number(data.get("factor")) or 1.0,
            params=data["params"] if isinstance(data.get("params"), dict) else {},
            original_context=L0 or 0,
            base_theta=theta,
            served_context=_int(data.get("served_context")) or 0,
            buffers_mode=str(buffers.get("mode", "rewrite")),
            buffers_changed=[str(b) for b in buffers.get("changed", [])] if isinstance(buffers.get("changed"), list) else [],
            before=data["before"] if isinstance(data.get("before"), dict) else {},
            after=data["after"] if isinstance(data.get("after"), dict) else {},
            rebase=data.get("rebase") is True,
            extra={k: v for k, v in data.items() if k not in known},
        )


def config_fingerprint(folder: Path) -> str:
    """The fingerprint a record (and probe.json, tune.json, batch state) keeps of the config.json it
    describes: which config a result belongs to."""
    return "sha256:" + hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()


def read_folder_record(folder: Path) -> Record | None:
    """The record of a ropeconv output folder; None for any other folder (or an unreadable record)."""
    data = read_json_object(folder / RECORD_NAME)
    return Record.from_json(data) if data is not None else None


def recorded_original_context(folder: Path, config: dict) -> int | None:
    """The trained context a ropeconv output's record holds, when config.json no longer states it:
    an NTK output keeps only θ' and max_position_embeddings = L0·s, so without the record L0·s would
    be taken for the trained length. None for any other folder or config."""
    try:
        spec = read_spec(config)
    except RopeconvError:
        return None
    if spec.original_context_source != "max_position_embeddings":
        return None  # the config states L0 (or a scaling entry derives it)
    record = read_folder_record(folder)
    if record is None or not record.original_context or record.original_context == spec.original_context:
        return None
    return record.original_context


def read_spec_with_record(folder: Path, config: dict, original_context: int | None = None) -> RopeSpec:
    """A model folder's RoPE, with the trained context from its record where config.json no longer
    states it (see `recorded_original_context`); an explicit `original_context` wins."""
    recorded = None if original_context is not None else recorded_original_context(folder, config)
    spec = read_spec(config, original_context=original_context or recorded)
    if recorded is not None:
        spec.original_context_source = f"{RECORD_NAME} (config.json no longer states the trained context)"
    return spec


def read_folder_record_json(folder: Path) -> dict | None:
    """ropeconv.json as written (for reports that show it whole); None when absent or not an object."""
    return read_json_object(folder / RECORD_NAME)


def gguf_record_keys(method: str, factor: float, base_theta: float, original_context: int,
                     version: str) -> dict[str, tuple[str, Any]]:
    """The `ropeconv.*` GGUF keys a conversion writes: name -> (kind, value), kind 'str', 'f32' or 'u32'."""
    return {
        GGUF_PREFIX + "version": ("str", version),
        GGUF_PREFIX + "method": ("str", method),
        GGUF_PREFIX + "factor": ("f32", factor),
        GGUF_PREFIX + "base.freq_base": ("f32", base_theta),
        GGUF_PREFIX + "base.original_context": ("u32", original_context),
    }


def gguf_record(kv: dict) -> dict | None:
    """The `ropeconv.*` keys an earlier conversion wrote into a GGUF file, prefix removed."""
    rec = {key[len(GGUF_PREFIX):]: v for key, v in kv.items() if key.startswith(GGUF_PREFIX)}
    return rec or None


def gguf_base(kv: dict) -> Base | None:
    """The unscaled base recorded in a GGUF file's `ropeconv.*` keys, if any."""
    rec = gguf_record(kv)
    theta = _number(rec.get("base.freq_base")) if rec else None
    if theta is None:
        return None
    return Base(str(rec.get("method", "?")), theta, _int(rec.get("base.original_context")))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) and number > 0 else None
