"""The model card (README.md) of a ropeconv output folder.

Built with huggingface_hub's `ModelCard`/`ModelCardData` from what the folder records:
`ropeconv.json` (source, method, factor, params, RoPE before/after), `tune.json` when `ropeconv tune`
chose the scaling, and, when a probe of this very output ran, `probe.json` (its recorded config fingerprint must match the folder's config.json:
a probe of another model says nothing about this one). License, pipeline tag, library and language are inherited from the source's own
card, whose text is kept below, attributed. Both JSON files are read defensively: a missing or
odd field leaves its line out rather than failing.

`write_card(folder)` is safe to call again: a card it wrote carries markers, so the source's card
is recovered from it instead of being nested.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ropeconv.output import write_text_atomic
from ropeconv.record import Record, read_folder_record_json
from ropeconv.folder import read_json_object

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
    "dynamic": "Dynamic scaling is not portable: SGLang applies it statically (at the full length), vLLM "
               "leaves θ unchanged (no scaling), llama.cpp's converter drops it. Prefer YaRN for serving.",
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


# -- the probe: what `ropeconv probe` wrote into this folder --------------------------------------

@dataclass(frozen=True)
class ProbeRow:
    """One probed length: this model's perplexities, and the source's when it was probed --against."""

    length: int
    ppl: float | None
    ppl_beyond: float | None
    ppl_last_quarter: float | None
    source_ppl: float | None = None
    source_ppl_beyond: float | None = None


@dataclass(frozen=True)
class ProbeSummary:
    """The parts of probe.json (ropeconv.probe.run_probe's result) the card reports."""

    status: str  # "pass", "fail" or "inconclusive"
    summary: str
    trained_context: int
    rows: tuple[ProbeRow, ...]
    against: str | None  # the compared model, by repo id or folder name
    text: str
    device: str
    dtype: str
    config_sha256: str | None  # of the probed config.json: tells whether the probe is of this output
    # (length, ratio, limit, passed): the past-L0 check applied to the source alone
    source_past_l0: tuple[tuple[int, float, float, bool], ...] = ()


def read_probe(probe: dict | None) -> ProbeSummary | None:
    """probe.json as written by `ropeconv probe`, or None when it is not one (missing or other shape)."""
    if not isinstance(probe, dict):
        return None
    verdict, runs, model = probe.get("verdict"), probe.get("results"), probe.get("model")
    if not (isinstance(verdict, dict) and isinstance(runs, list) and isinstance(model, dict)
            and verdict.get("status") in ("pass", "fail", "inconclusive") and _int(probe.get("trained_context"))):
        return None
    rows = []
    for run in runs:
        if not (isinstance(run, dict) and _int(run.get("length")) and isinstance(run.get("model"), dict)):
            return None
        mine, theirs = run["model"], run.get("against") if isinstance(run.get("against"), dict) else {}
        rows.append(ProbeRow(int(run["length"]), _float(mine.get("ppl")), _float(mine.get("ppl_beyond")),
                             _float(mine.get("ppl_last_quarter")), _float(theirs.get("ppl")),
                             _float(theirs.get("ppl_beyond"))))
    against = probe.get("against") if isinstance(probe.get("against"), dict) else None
    against_name = None
    if against:  # never a local path from the machine that probed
        against_name = against.get("repo_id") or (Path(str(against["path"])).name if against.get("path") else "BASE")
    text = probe.get("text") if isinstance(probe.get("text"), dict) else {}
    text_name = str(text.get("name") or "the probe's text")
    if text.get("source") == "file":  # a --text file: its name, never the prober's path
        text_name = f"the text file {Path(text_name).name}"
    return ProbeSummary(status=verdict["status"], summary=str(verdict.get("summary") or ""),
                        trained_context=int(probe["trained_context"]), rows=tuple(rows), against=against_name,
                        text=text_name, device=str(probe.get("device") or "?"),
                        dtype=str(probe.get("dtype") or "?"),
                        config_sha256=model.get("config_sha256") if isinstance(model.get("config_sha256"), str) else None,
                        source_past_l0=tuple((int(c["length"]), float(c["value"]), float(c["limit"]),
                                              bool(c.get("passed")))
                                             for c in verdict.get("source_checks") or []
                                             if isinstance(c, dict) and _int(c.get("length"))
                                             and _float(c.get("value")) and _float(c.get("limit"))))


def probe_of_folder(folder: Path, probe: dict | None) -> ProbeSummary | None:
    """The folder's probe.json when it measured this very output: its recorded config fingerprint must
    match the folder's config.json. A probe.json of another model (carried over from a source, or
    made before the config changed) or without a fingerprint says nothing about this output."""
    summary = read_probe(probe)
    return summary if summary is not None and _measures_config(folder, summary.config_sha256) else None


def _measures_config(folder: Path, recorded: str | None) -> bool:
    """True when `recorded` is the fingerprint of the folder's config.json (a measurement of this output)."""
    if recorded is None:
        return False
    try:
        return recorded == "sha256:" + hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    except OSError:
        return False


# -- the search: what `ropeconv tune` wrote into this folder ---------------------------------------

@dataclass(frozen=True)
class TuneSummary:
    """The parts of tune.json (ropeconv.tune.run_tune's result) the card reports."""

    method: str
    target_context: int
    trials: int
    past_ppl: float  # the winner's perplexity past L0 at the target
    short_ratio: float | None  # the winner's perplexity at the short window over the unscaled model's
    short_length: int | None
    default_past_ppl: float | None  # the method's default parameters, same text and length
    default_short_ratio: float | None
    base_past_ppl: float | None  # the unscaled model
    text: str
    plot: bool  # tune.png is beside it (set by tune_of_folder)
    config_sha256: str | None


def read_tune(document: dict | None) -> TuneSummary | None:
    """tune.json as written by `ropeconv tune`, or None when it is not one."""
    if not isinstance(document, dict):
        return None
    best = document.get("best") if isinstance(document.get("best"), dict) else {}
    trials, target = document.get("trials"), _int(document.get("target_context"))
    if not (isinstance(trials, list) and target and _float(best.get("past_ppl")) and document.get("method")):
        return None
    default = document.get("default") if isinstance(document.get("default"), dict) else {}
    base = document.get("base") if isinstance(document.get("base"), dict) else {}
    short = document.get("short_context") if isinstance(document.get("short_context"), dict) else {}
    text = document.get("text") if isinstance(document.get("text"), dict) else {}
    text_name = str(text.get("name") or "the calibration text")
    if text.get("source") == "file":  # never the tuner's path
        text_name = f"the text file {Path(text_name).name}"
    fingerprint = document.get("config_sha256")
    return TuneSummary(method=str(document["method"]), target_context=target, trials=len(trials),
                       past_ppl=float(best["past_ppl"]), short_ratio=_float(best.get("short_ratio")),
                       short_length=_int(short.get("length")), default_past_ppl=_float(default.get("past_ppl")),
                       default_short_ratio=_float(default.get("short_ratio")), base_past_ppl=_float(base.get("past_ppl")),
                       text=text_name, plot=False,
                       config_sha256=fingerprint if isinstance(fingerprint, str) else None)


def tune_of_folder(folder: Path, document: dict | None) -> TuneSummary | None:
    """The folder's tune.json when its winner is this very config (same rule as the probe's)."""
    summary = read_tune(document)
    if summary is None or not _measures_config(folder, summary.config_sha256):
        return None
    return replace(summary, plot=(folder / "tune.png").is_file())


def _tune_section(tune: TuneSummary) -> list[str]:
    short = f"perplexity at {tune.short_length:,} tokens over the unscaled model's" if tune.short_length else \
        "short-context perplexity over the unscaled model's"
    lines = ["## How the scaling was chosen", "",
             f"The {tune.method} parameters were found by `ropeconv tune`: {tune.trials} trials, each measuring "
             f"perplexity past the trained context at {tune.target_context:,} tokens on {tune.text} (lower is "
             f"better), under a bound on {short}.", "",
             f"| | perplexity past L0 at {tune.target_context:,} | {short} |", "|---|---|---|"]
    if tune.base_past_ppl is not None:
        lines.append(f"| unscaled | {_ppl(tune.base_past_ppl)} | ×1 |")
    if tune.default_past_ppl is not None:
        lines.append(f"| {tune.method} defaults | {_ppl(tune.default_past_ppl)} | {_ratio(tune.default_short_ratio)} |")
    lines += [f"| tuned (this model) | {_ppl(tune.past_ppl)} | {_ratio(tune.short_ratio)} |", ""]
    if tune.plot:
        lines += ["![The search (left) and perplexity by position for the unscaled model, the method's defaults "
                  "and the tuned scaling (right)](tune.png)", ""]
    return lines


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"×{value:.3f}"


def _float(value: Any) -> float | None:
    return float(value) if _is_number(value) and math.isfinite(value) else None


def _ppl(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _probe_section(probe: ProbeSummary) -> list[str]:
    word = {"pass": "**passed**", "fail": "**failed**", "inconclusive": "**inconclusive**"}[probe.status]
    reason = probe.summary.removeprefix("pass: ").removeprefix("fail: ")
    lines = ["## Probe", "",
             f"Verdict: {word} — {_num(reason)}" if reason else f"Verdict: {word}", "",
             f"Perplexity by window length (lower is better), measured with `ropeconv probe` on {probe.text}, "
             f"{probe.device}, {probe.dtype}. L0 = {probe.trained_context:,} is the trained context; "
             "\"past L0\" covers the positions beyond it.", ""]
    if probe.against:
        lines += [f"| length | {_num(probe.against)} | this model | {_num(probe.against)}, past L0 "
                  "| this model, past L0 | this model, last ¼ |", "|---|---|---|---|---|---|"]
        lines += [f"| {r.length:,} | {_ppl(r.source_ppl)} | {_ppl(r.ppl)} | {_ppl(r.source_ppl_beyond)} "
                  f"| {_ppl(r.ppl_beyond)} | {_ppl(r.ppl_last_quarter)} |" for r in probe.rows]
        failed = [(n, ratio, limit) for n, ratio, limit, passed in probe.source_past_l0 if not passed]
        if failed:
            where = "; ".join(f"×{ratio:.3g} at {n:,} tokens, limit ×{limit:g}" for n, ratio, limit in failed)
            lines += ["", f"Past L0 the source on its own climbs against the second half of its trained window "
                      f"({where}): this model holds where the source does not."]
    else:
        lines += ["| length | perplexity | past L0 | last ¼ |", "|---|---|---|---|"]
        lines += [f"| {r.length:,} | {_ppl(r.ppl)} | {_ppl(r.ppl_beyond)} | {_ppl(r.ppl_last_quarter)} |"
                  for r in probe.rows]
    return lines + [""]


def eval_results(probe: ProbeSummary | None) -> list:
    """model-index entries: this model's perplexity at each probed length (never the source's)."""
    from huggingface_hub import EvalResult

    if probe is None:
        return []
    return [EvalResult(task_type="text-generation", dataset_type="ropeconv-probe", dataset_name=probe.text,
                       metric_type="perplexity", metric_value=row.ppl, metric_name=f"perplexity @ {row.length:,} tokens")
            for row in probe.rows if row.ppl is not None]


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
    if was_rebase(record):
        command += " --rebase"
    return ["## Reproduce", "", "```bash", "pip install ropeconv", command, "```", ""]


def was_rebase(record: dict) -> bool:
    """Whether the conversion replaced an earlier scaling (`extend --rebase`): the record says so, or
    its source was already scaled (a scaled rope_type, or a θ other than the unscaled base's, as NTK
    leaves it) — which `extend` refuses without --rebase."""
    typed = Record.from_json(record)
    if typed is not None and "rebase" in record:
        return typed.rebase
    before = record.get("before") if isinstance(record.get("before"), dict) else {}
    base = record.get("base") if isinstance(record.get("base"), dict) else {}
    if before.get("rope_type") not in (None, "default"):
        return True
    return _is_number(base.get("rope_theta")) and _is_number(before.get("rope_theta")) and \
        not math.isclose(base["rope_theta"], before["rope_theta"])


def unscaled_context(record: dict) -> int | None:
    """L0 of the unscaled base the conversion scaled from (for a rebase: not the served context of the
    already-scaled source)."""
    typed = Record.from_json(record)
    if typed is not None and typed.original_context:
        return typed.original_context
    base = record.get("base") if isinstance(record.get("base"), dict) else {}
    before = record.get("before") if isinstance(record.get("before"), dict) else {}
    return (_int(base.get("original_context")) or _int(record.get("original_context"))
            or _int(before.get("original_context")))


def card_body(record: dict, probe: ProbeSummary | None, source_text: str | None, *, name: str,
              tune: TuneSummary | None = None, finetune: dict | None = None) -> str:
    """The markdown below the metadata block."""
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    before = record.get("before") if isinstance(record.get("before"), dict) else {}
    after = record.get("after") if isinstance(record.get("after"), dict) else {}
    method = str(record.get("method") or "")
    factor = record.get("factor")
    base = source.get("repo_id")
    l0 = unscaled_context(record)
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
        *_what_changed(record, buffer_note),
    ]
    if source.get("sha") and base:
        lines += [f"Source revision: `{source['sha']}`.", ""]
    if before or after:
        lines += ["## RoPE configuration", ""] + _rope_table(before, after) + [""]
    lines += _usage(repo, name.split("/")[-1], method, factor, served)
    if tune is not None:
        lines += _tune_section(tune)
    lines += _finetune_section(finetune)
    if probe is not None:
        lines += _probe_section(probe)
    else:
        lines += ["## Probe", "", "This output has not been probed: no perplexity was measured for it. "
                  "`ropeconv probe` measures it (add `--against` with the source model to compare).", ""]
    lines += _reproduce(record)
    if source_text and source_text.strip():
        credit = f"[{base}]({_hub_url()}/{base})" if base else "the source model"
        lines += ["## Original model card", "",
                  f"The card of {credit} follows unchanged; it describes the model before the context extension.",
                  "", SOURCE_START, source_text.strip("\n"), SOURCE_END, ""]
    return "\n".join(lines)


def _what_changed(record: dict, buffer_note: str) -> list[str]:
    """The card's statement about the weights: unchanged for extend and tune, trained for finetune."""
    trained = record.get("finetune") if isinstance(record.get("finetune"), dict) else None
    if trained is None:
        return ["**The weights were not changed or fine-tuned.** ropeconv rewrote only the RoPE settings in "
                f"`config.json` (and `model_max_length` in `tokenizer_config.json` when it was lower){buffer_note}. "
                "How well the model uses the longer context depends on the method and is not guaranteed without "
                "fine-tuning; check the probe results below when present.", ""]
    steps, tokens, window = _int(trained.get("steps")), _int(trained.get("tokens")), _int(trained.get("window"))
    how = "with PoSE position skips" if trained.get("position_skips", True) else "without position skips"
    lora = f", LoRA rank {trained['lora']} merged into the weights" if trained.get("lora") else ""
    return [f"**The weights were fine-tuned** by `ropeconv finetune` after the RoPE settings were rewritten: "
            f"{steps if steps is not None else '?'} steps, {f'{tokens:,}' if tokens is not None else '?'} tokens "
            f"in {window if window is not None else '?'}-token windows {how}{lora}. "
            "`finetune.json` holds the losses and the evaluation before and after; `ropeconv.json` the settings.",
            ""]


def _finetune_section(document: dict | None) -> list[str]:
    """finetune.json's evaluation: perplexity past L0 and overall on its held-out text, before and after."""
    evaluation = (document or {}).get("eval") if isinstance(document, dict) else None
    if not isinstance(evaluation, dict):
        return []
    before = evaluation.get("before") if isinstance(evaluation.get("before"), dict) else {}
    rows = [("unscaled", before.get("unscaled")), ("training-free", before.get("training_free")),
            ("fine-tuned (this model)", evaluation.get("after"))]
    length = _int(evaluation.get("length"))
    lines = ["## Fine-tuning evaluation", "",
             f"Perplexity on a held-out text{f' of {length:,} tokens' if length else ''} (lower is better), "
             "measured by ropeconv's probe code before and after training:", "",
             "| model | past the trained context | overall |", "|---|---|---|"]
    for label, summary in rows:
        if isinstance(summary, dict):
            lines.append(f"| {label} | {_ppl(_float(summary.get('ppl_beyond')))} | {_ppl(_float(summary.get('ppl')))} |")
    return lines + ["", "![finetune.png: the loss curve and perplexity by position](finetune.png)", ""]


def build_card(record: dict, probe: ProbeSummary | dict | None = None, source_card_text: str | None = None, *,
               name: str = "model", repo_id: str | None = None, tune: TuneSummary | None = None,
               finetune: dict | None = None):
    """A huggingface_hub ModelCard for a ropeconv output. `probe`: a probe of this very output (probe.json
    as `ropeconv probe` writes it, or read_probe's summary of it); `write_card` drops stale ones."""
    from huggingface_hub import ModelCard, ModelCardData

    probe = probe if isinstance(probe, ProbeSummary) or probe is None else read_probe(probe)

    source_meta, source_text = source_card_of(source_card_text) if source_card_text else ({}, None)
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    method = record.get("method")
    tags = list(BASE_TAGS) + ([str(method)] if method else [])
    inherited = {k: source_meta[k] for k in INHERITED if source_meta.get(k)}
    inherited.setdefault("library_name", "transformers")
    model_name = (repo_id or name).split("/")[-1]
    data = ModelCardData(base_model=source.get("repo_id") or None, tags=tags, eval_results=eval_results(probe) or None,
                         model_name=model_name, **inherited)
    body = card_body({**record, "_repo_id": repo_id or name}, probe, source_text, name=repo_id or name, tune=tune,
                     finetune=finetune)
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
    record = read_folder_record_json(folder) or {}
    probe = probe_of_folder(folder, read_json_object(folder / "probe.json"))
    tune = tune_of_folder(folder, read_json_object(folder / "tune.json"))
    finetune = read_json_object(folder / "finetune.json") if isinstance(record.get("finetune"), dict) else None
    card = build_card(record, probe, source_card_text, name=folder.name, repo_id=repo_id, tune=tune,
                      finetune=finetune)
    write_text_atomic(readme, str(card))  # README.md may be a hard link into the Hub cache
    return readme
