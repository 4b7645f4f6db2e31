"""The model card (README.md) of a ropeconv output folder.

Built with huggingface_hub's `ModelCard`/`ModelCardData` from what the folder records:
`ropeconv.json` (source, method, factor, params, RoPE before/after) and, when a probe ran,
`probe.json`. License, pipeline tag, library and language are inherited from the source's own
card, whose text is kept below, attributed. Both JSON files are read defensively: a missing or
odd field leaves its line out rather than failing.

`write_card(folder)` is safe to call again: a card it wrote carries markers, so the source's card
is recovered from it instead of being nested.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from ropeconv.output import write_text_atomic
from ropeconv.source import read_json_object

MARKER = "<!-- ropeconv model card: regenerate with `ropeconv push` or ropeconv.card.write_card -->"
SOURCE_START = "<!-- ropeconv: source card start -->"
SOURCE_END = "<!-- ropeconv: source card end -->"
BASE_TAGS = ("ropeconv", "rope-scaling", "context-extension")
INHERITED = ("license", "license_name", "license_link", "pipeline_tag", "library_name", "language")
# Method options of `ropeconv extend` that a reproduce command can spell out (lists are left to files).
SCALAR_OPTIONS = ("beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor", "low_freq_factor",
                  "high_freq_factor")
METHOD_NAMES = {"linear": "linear interpolation (Position Interpolation)", "ntk": "NTK-aware scaling (new rope_theta)",
                "dynamic": "dynamic NTK scaling", "yarn": "YaRN", "llama3": "Llama 3 frequency scaling",
                "longrope": "LongRoPE"}
ENGINE_NOTES = {
    "linear": "vLLM and SGLang multiply `max_position_embeddings` by the factor themselves, which is why it "
              "keeps the trained value.",
    "ntk": "This is a plain new `rope_theta` with no scaling entry, so every engine reads it the same way.",
    "dynamic": "Dynamic scaling is not portable: SGLang and older vLLM apply it statically, llama.cpp and "
               "exllamav2 ignore it. Prefer YaRN for serving.",
    "yarn": "Static YaRN costs a little quality on short inputs in every engine; use the smallest factor that "
            "covers the lengths you need.",
    "llama3": "llama.cpp's converter reads the top-level `original_max_position_embeddings` that ropeconv wrote.",
    "longrope": "Engines switch between the short and long factors at different moments (per pass, batch, "
                "or served length), so very long and short requests may differ slightly across engines.",
}


# -- reading the folder --------------------------------------------------------------------------



_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)


def split_card(text: str) -> tuple[dict, str]:
    """(metadata, body) of a card; unreadable YAML counts as no metadata and is dropped from the body."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        import yaml

        meta = yaml.safe_load(match.group(1)) or {}
    except Exception:  # yaml.YAMLError: the source's metadata is simply not inherited
        meta = {}
    return (meta if isinstance(meta, dict) else {}), text[match.end():]


def source_card_of(readme: str) -> tuple[dict, str]:
    """The source's card metadata and text, from a README.md that is either the source's own card or one
    this module wrote earlier (whose metadata already holds what was inherited)."""
    meta, body = split_card(readme)
    if MARKER not in body:
        return meta, body
    start, end = body.find(SOURCE_START), body.find(SOURCE_END)
    kept = body[start + len(SOURCE_START):end].strip("\n") if 0 <= start < end else ""
    return {k: meta[k] for k in INHERITED if k in meta}, kept


# -- formatting helpers --------------------------------------------------------------------------

def _num(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 1000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:.6g}"
    if value is None or value == "" or value == {} or value == []:
        return "—"
    if isinstance(value, (list, tuple)):
        return f"{len(value)} values" if len(value) > 6 else ", ".join(_num(v) for v in value)
    return str(value).replace("|", "\\|")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value: Any) -> int | None:
    return int(value) if _is_number(value) and math.isfinite(value) else None


# -- sections ------------------------------------------------------------------------------------

def _rope_table(before: dict, after: dict) -> list[str]:
    rows = [("rope_type", "rope_type"), ("rope_theta", "rope_theta"),
            ("trained context (L0)", "original_context"), ("max_position_embeddings", "max_position_embeddings"),
            ("served context", "served_context"), ("attention factor", "attention_factor")]
    lines = ["| | before | after |", "|---|---|---|"]
    for label, key in rows:
        if key in before or key in after:
            lines.append(f"| {label} | {_num(before.get(key))} | {_num(after.get(key))} |")
    scaling_before = before.get("scaling") if isinstance(before.get("scaling"), dict) else {}
    scaling_after = after.get("scaling") if isinstance(after.get("scaling"), dict) else {}
    for key in sorted(set(scaling_before) | set(scaling_after)):
        lines.append(f"| `{key}` | {_num(scaling_before.get(key))} | {_num(scaling_after.get(key))} |")
    return lines


def probe_rows(probe: dict) -> list[dict]:
    """The per-length rows of a probe.json, whatever the list is called."""
    for key in ("results", "rows", "lengths", "points", "measurements", "table", "perplexity", "perplexities"):
        value = probe.get(key)
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            return value
        if isinstance(value, dict) and value and all(_is_number(v) for v in value.values()):
            return [{"length": k, "perplexity": v} for k, v in value.items()]
    return []


LENGTH_KEYS = ("length", "tokens", "context", "seq_len", "context_length", "n_tokens", "position")


def _row_length(row: dict) -> Any:
    return next((row[k] for k in LENGTH_KEYS if k in row), None)


def _verdict(probe: dict) -> tuple[bool | None, str]:
    verdict = probe.get("verdict")
    if isinstance(verdict, dict):
        passed = verdict.get("passed")
        reason = next((str(verdict[k]) for k in ("summary", "reason", "message", "detail") if verdict.get(k)), "")
        return (passed if isinstance(passed, bool) else None), reason
    if isinstance(verdict, str):
        lowered = verdict.lower()
        return ({"pass": True, "passed": True, "ok": True, "fail": False, "failed": False}.get(lowered)), verdict
    passed = probe.get("passed")
    return (passed if isinstance(passed, bool) else None), ""


def _probe_section(probe: dict) -> list[str]:
    rows = probe_rows(probe)
    passed, reason = _verdict(probe)
    lines = ["## Probe", ""]
    if passed is not None or reason:
        word = {True: "**passed**", False: "**failed**", None: ""}[passed]
        lines += [f"Verdict: {word}{' — ' if word and reason else ''}{_num(reason) if reason else ''}", ""]
    if rows:
        columns = []
        for row in rows:
            for key, value in row.items():
                if key not in columns and (_is_number(value) or isinstance(value, (str, bool))):
                    columns.append(key)
        first = next((k for k in LENGTH_KEYS if k in columns), None)
        if first:
            columns.remove(first)
            columns.insert(0, first)
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_num(row.get(c)) for c in columns) + " |" for row in rows]
        lines.append("")
    dataset = _dataset_name(probe)
    if dataset:
        lines += [f"Measured on {dataset}. Perplexity is of the model's own next-token predictions; lower is better.",
                  ""]
    return lines


def _dataset_name(probe: dict) -> str | None:
    for key in ("dataset", "text", "corpus", "data"):
        value = probe.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            return value["name"]
    return None


# Probe columns about another model (the source, the unscaled baseline): never this model's results.
OTHER_MODEL_WORDS = ("baseline", "source", "before", "original", "reference", "unscaled", "base_")


def _is_own_perplexity(key: str) -> bool:
    lowered = key.lower()
    return ("perplex" in lowered or "ppl" in lowered) and not any(w in lowered for w in OTHER_MODEL_WORDS)


def eval_results(probe: dict | None) -> list:
    """model-index entries: one perplexity metric per probe row and perplexity column."""
    from huggingface_hub import EvalResult

    if not probe:
        return []
    dataset = _dataset_name(probe) or "ropeconv probe text"
    out = []
    for row in probe_rows(probe):
        length = _row_length(row)
        for key, value in row.items():
            if _is_own_perplexity(key) and _is_number(value) and math.isfinite(value):
                label = key if key.lower() in ("perplexity", "ppl") else key.replace("_", " ")
                out.append(EvalResult(task_type="text-generation", dataset_type="ropeconv-probe",
                                      dataset_name=dataset, metric_type="perplexity", metric_value=float(value),
                                      metric_name=f"{label} @ {_num(length)} tokens" if length is not None else label))
    return out


def _hub_url() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _usage(repo: str, name: str, method: str, factor: Any, served: int | None) -> list[str]:
    length = f" --max-model-len {served}" if served else ""
    ctx = f" -c {served}" if served else ""
    lines = [
        "## Use it", "",
        "### transformers", "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
        f'model = AutoModelForCausalLM.from_pretrained("{repo}", torch_dtype="auto")',
        "```", "",
        "The RoPE scaling is read from `config.json`; there is nothing else to set.", "",
        "### vLLM", "",
        "```bash",
        f"vllm serve {repo}{length}",
        "```", "",
        "### llama.cpp", "",
        "```bash",
        f"hf download {repo} --local-dir {name}",
        f"python convert_hf_to_gguf.py {name} --outfile {name}.gguf",
        f"llama-server -m {name}.gguf{ctx}",
        "```", "",
        "The converter carries the RoPE scaling into the GGUF metadata (an existing GGUF can be extended "
        f"directly: `ropeconv extend model.gguf --method {method or 'yarn'} --factor "
        f"{factor:g}`)." if _is_number(factor) else "The converter carries the RoPE scaling into the GGUF metadata.",
    ]
    if method in ENGINE_NOTES:
        lines += ["", f"Note: {ENGINE_NOTES[method]}"]
    return lines + [""]


def _reproduce(record: dict) -> list[str]:
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    if source.get("repo_id"):
        spec = f"{source['repo_id']}@{source['sha']}" if source.get("sha") else source["repo_id"]
    else:  # a local folder: its name only, never a path from the machine that made it
        spec = f"./{Path(source['path']).name}" if source.get("path") else "MODEL"
    method, factor = record.get("method"), record.get("factor")
    if not method:
        return []
    command = f"ropeconv extend {spec} --method {method}"
    if _is_number(factor):
        command += f" --factor {factor:g}"
    params = record.get("params") if isinstance(record.get("params"), dict) else {}
    for key in SCALAR_OPTIONS:
        if _is_number(params.get(key)):
            command += f" --{key.replace('_', '-')} {params[key]:g}"
    if isinstance(params.get("truncate"), bool):
        command += " --truncate" if params["truncate"] else " --no-truncate"
    return ["## Reproduce", "", "```bash", "pip install ropeconv", command, "```", ""]


def card_body(record: dict, probe: dict | None, source_text: str | None, *, name: str) -> str:
    """The markdown below the metadata block."""
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    before = record.get("before") if isinstance(record.get("before"), dict) else {}
    after = record.get("after") if isinstance(record.get("after"), dict) else {}
    method = str(record.get("method") or "")
    factor = record.get("factor")
    base = source.get("repo_id")
    l0 = _int(before.get("served_context")) or _int(before.get("original_context"))
    served = _int(record.get("served_context")) or _int(after.get("served_context"))
    repo = record.get("_repo_id") or name
    origin = f"[{base}]({_hub_url()}/{base})" if base else (f"`{Path(source['path']).name}`"
                                                                       if source.get("path") else "the source model")
    how = METHOD_NAMES.get(method, method or "a RoPE scaling method")
    by = f" by a factor of {factor:g}" if _is_number(factor) else ""
    span = f" from **{l0:,}** to **{served:,}** tokens" if l0 and served else ""
    buffers = record.get("buffers") if isinstance(record.get("buffers"), dict) else {}
    buffer_note = (" and the stored rotary buffers (`inv_freq`/cos/sin caches, which are computed from the config, "
                   "not learned)") if buffers.get("changed") else ""
    lines = [
        MARKER, "",
        f"# {name}", "",
        f"{origin} with its context window extended{span} using {how}{by}, made with "
        f"ropeconv{' ' + str(record['ropeconv_version']) if record.get('ropeconv_version') else ''}.",
        "",
        "**The weights were not changed or fine-tuned.** ropeconv rewrote only the RoPE settings in "
        f"`config.json` (and `model_max_length` in `tokenizer_config.json` when it was lower){buffer_note}. "
        "How well the model uses the longer context depends on the method and is not guaranteed without "
        "fine-tuning; check the probe results below when present.", "",
    ]
    if source.get("sha") and base:
        lines += [f"Source revision: `{source['sha']}`.", ""]
    if before or after:
        lines += ["## RoPE configuration", ""] + _rope_table(before, after) + [""]
    lines += _usage(repo, name.split("/")[-1], method, factor, served)
    if probe:
        lines += _probe_section(probe)
    lines += _reproduce(record)
    if source_text and source_text.strip():
        credit = f"[{base}]({_hub_url()}/{base})" if base else "the source model"
        lines += ["## Original model card", "",
                  f"The card of {credit} follows unchanged; it describes the model before the context extension.",
                  "", SOURCE_START, source_text.strip("\n"), SOURCE_END, ""]
    return "\n".join(lines)


def build_card(record: dict, probe: dict | None = None, source_card_text: str | None = None, *,
               name: str = "model", repo_id: str | None = None):
    """A huggingface_hub ModelCard for a ropeconv output."""
    from huggingface_hub import ModelCard, ModelCardData

    source_meta, source_text = source_card_of(source_card_text) if source_card_text else ({}, None)
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    method = record.get("method")
    tags = list(BASE_TAGS) + ([str(method)] if method else [])
    inherited = {k: source_meta[k] for k in INHERITED if source_meta.get(k)}
    inherited.setdefault("library_name", "transformers")
    model_name = (repo_id or name).split("/")[-1]
    data = ModelCardData(base_model=source.get("repo_id") or None, tags=tags, eval_results=eval_results(probe) or None,
                         model_name=model_name, **inherited)
    body = card_body({**record, "_repo_id": repo_id or name}, probe, source_text, name=repo_id or name)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_card(folder: str | Path, source_card_text: str | None = None, *, repo_id: str | None = None) -> Path:
    """Write README.md into `folder` (atomically) from its ropeconv.json and probe.json.

    `source_card_text`: the source's README.md; by default the folder's current README.md is taken as it
    (either the source's card carried over, or a card written here before)."""
    folder = Path(folder)
    readme = folder / "README.md"
    if source_card_text is None and readme.is_file():
        try:
            source_card_text = readme.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            source_card_text = None
    record = read_json_object(folder / "ropeconv.json") or {}
    probe = read_json_object(folder / "probe.json")
    card = build_card(record, probe, source_card_text, name=folder.name, repo_id=repo_id)
    write_text_atomic(readme, str(card))  # README.md may be a hard link into the Hub cache
    return readme
