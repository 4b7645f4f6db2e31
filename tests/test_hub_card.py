"""The model card written into an output folder (no server needed)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from ropeconv.card import MARKER, SOURCE_START, read_probe, write_card
from ropeconv.cli import app

SOURCE_CARD = """---
license: llama3.1
license_name: llama3.1
pipeline_tag: text-generation
library_name: transformers
language: [en, de]
tags: [facebook, meta]
---
# Source model

Trained by someone else. Cite them.
"""

RECORD = {
    "ropeconv_version": "0.1.0",
    "source": {"kind": "hub", "repo_id": "org/base-model", "revision": "main", "sha": "a" * 40},
    "method": "yarn",
    "factor": 4.0,
    "params": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 4.0},
    "served_context": 32768,
    "buffers": {"mode": "rewrite", "changed": []},
    "before": {"rope_type": "default", "rope_theta": 500000.0, "original_context": 8192,
               "max_position_embeddings": 8192, "served_context": 8192, "attention_factor": 1.0, "scaling": {}},
    "after": {"rope_type": "yarn", "rope_theta": 500000.0, "original_context": 8192,
              "max_position_embeddings": 32768, "served_context": 32768, "attention_factor": 1.1386,
              "scaling": {"factor": 4.0, "original_max_position_embeddings": 8192}},
}


def folder_with(tmp_path: Path, record: dict | None = RECORD, probe: dict | None = None,
                readme: str | None = SOURCE_CARD) -> Path:
    folder = tmp_path / "base-model-yarn-x4"
    folder.mkdir()
    if record is not None:
        (folder / "ropeconv.json").write_text(json.dumps(record))
    if probe is not None:
        (folder / "probe.json").write_text(json.dumps(probe))
    if readme is not None:
        (folder / "README.md").write_text(readme)
    return folder


def test_card_metadata_and_sections(tmp_path):
    path = write_card(folder_with(tmp_path), repo_id="me/base-model-yarn-x4")
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["base_model"] == "org/base-model"
    assert data["tags"] == ["ropeconv", "rope-scaling", "context-extension", "yarn"]
    assert (data["license"], data["license_name"], data["pipeline_tag"], data["library_name"]) == (
        "llama3.1", "llama3.1", "text-generation", "transformers")
    assert data["language"] == ["en", "de"]
    assert "model-index" not in data  # nothing was measured
    text = card.text
    assert "The weights were not changed or fine-tuned." in text
    assert "**8,192** to **32,768** tokens using YaRN by a factor of 4" in text
    assert "| rope_type | default | yarn |" in text and "| max_position_embeddings | 8,192 | 32,768 |" in text
    assert 'from_pretrained("me/base-model-yarn-x4"' in text
    assert "vllm serve me/base-model-yarn-x4 --max-model-len 32768" in text
    assert "llama-server -m base-model-yarn-x4.gguf -c 32768" in text
    assert "This output has not been probed" in text and "Verdict" not in text
    assert f"ropeconv extend org/base-model@{'a' * 40} --method yarn --factor 4 --beta-fast 32 --beta-slow 1\n" in text
    assert text.index("## Original model card") > text.index("## Reproduce")
    assert "Trained by someone else. Cite them." in text and "[org/base-model]" in text


def test_rewriting_the_card_keeps_the_source_card_once(tmp_path, probed):
    folder = tmp_path / "out"
    shutil.copytree(probed["output"], folder)
    (folder / "probe.json").rename(tmp_path / "probe.json")
    (folder / "README.md").write_text(SOURCE_CARD)
    first = write_card(folder).read_text()
    (tmp_path / "probe.json").rename(folder / "probe.json")
    second = write_card(folder).read_text()
    assert second.count("Trained by someone else.") == 1 and second.count(SOURCE_START) == 1
    assert "Verdict: **passed**" in second and "Verdict" not in first
    assert ModelCard(second).data.to_dict()["license"] == "llama3.1"  # inherited again from the first card
    (folder / "probe.json").unlink()
    assert write_card(folder).read_text() == first


def test_a_hard_linked_readme_is_replaced_not_modified(tmp_path):
    cache = tmp_path / "blob"
    cache.write_text(SOURCE_CARD)
    folder = folder_with(tmp_path, readme=None)
    os.link(cache, folder / "README.md")
    write_card(folder)
    assert cache.read_text() == SOURCE_CARD and MARKER in (folder / "README.md").read_text()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_odd_inputs_still_give_a_card(tmp_path):
    broken_yaml = "---\nlicense: [unclosed\n---\nBody text survives.\n"
    folder = folder_with(tmp_path, record={"method": "linear", "before": "?", "after": None, "factor": "x"},
                         probe={"verdict": "fail", "lengths": {"2048": 5.1, "8192": 99.0}}, readme=broken_yaml)
    text = write_card(folder).read_text()
    card = ModelCard(text)
    assert "license" not in card.data.to_dict() and "Body text survives." in text
    assert "Verdict" not in text and "This output has not been probed" in text  # not a probe.json of ropeconv's
    assert card.data.to_dict()["tags"][-1] == "linear"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not changed or fine-tuned" in write_card(empty).read_text()


# ---- the probe section, from the probe.json `ropeconv probe` writes --------------------------------

@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """A tiny model (L0 64) extended with YaRN ×4 and probed --quick against it by the real CLI."""
    from test_probe import build_model

    from ropeconv import api

    root = tmp_path_factory.mktemp("card")
    source = build_model(root / "tiny-src", "copy")
    output = root / "tiny-src-yarn-x4"
    api.extend(str(source), "yarn", factor=4, output=output)
    text = root / "text.txt"
    text.write_text("a" * 400)
    result = CliRunner().invoke(app, ["probe", str(output), "--against", str(source), "--quick", "--text", str(text),
                                      "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    return {"source": source, "output": output, "text": text, "result": json.loads(result.stdout)}


def test_the_card_reports_the_probe_json_ropeconv_wrote(probed, tmp_path):
    folder = tmp_path / "out"
    shutil.copytree(probed["output"], folder)
    result = probed["result"]
    assert read_probe(json.loads((folder / "probe.json").read_text())) is not None
    card = ModelCard.load(write_card(folder))
    text = card.text
    assert "## Probe" in text and "Verdict: **passed** — 3 check(s) within their thresholds" in text
    assert f"on the text file text.txt, cpu, {result['dtype']}" in text and "L0 = 64" in text
    assert ("| length | tiny-src | this model | tiny-src, past L0 | this model, past L0 | this model, last ¼ |"
            in text)
    for run in result["results"]:  # one row per probed length, this model's and the source's numbers
        mine, theirs = run["model"], run["against"]
        row = next(line for line in text.splitlines() if line.startswith(f"| {run['length']} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) == pytest.approx(theirs["ppl"], rel=2e-3)
        assert float(cells[2]) == pytest.approx(mine["ppl"], rel=2e-3)
    metrics = card.data.to_dict()["model-index"][0]["results"][0]["metrics"]
    assert [(m["name"], m["value"]) for m in metrics] == [
        (f"perplexity @ {run['length']} tokens", run["model"]["ppl"]) for run in result["results"]]
    assert str(probed["source"].parent) not in text  # the source by name, never a local path


def test_a_probe_json_of_another_config_is_ignored(probed, tmp_path):
    """A probe.json that measured a different config (copied in with a source, or from before a
    change) says nothing about this output: no verdict, no table, no model-index."""
    from ropeconv import api

    other = tmp_path / "linear"
    api.extend(str(probed["source"]), "linear", factor=2, output=other)
    (other / "probe.json").write_bytes((probed["output"] / "probe.json").read_bytes())
    card = ModelCard.load(write_card(other))
    assert "Verdict" not in card.text and "This output has not been probed" in card.text
    assert "model-index" not in card.data.to_dict()
    unfingerprinted = json.loads((probed["output"] / "probe.json").read_text())
    del unfingerprinted["model"]["config_sha256"]
    (other / "probe.json").write_text(json.dumps(unfingerprinted))
    assert "Verdict" not in write_card(other).read_text()


def test_the_card_shows_the_search_only_for_the_config_it_chose(probed, tmp_path):
    """tune.json (as `ropeconv tune` writes it: see test_tune for the real run) becomes the card's
    "How the scaling was chosen" table when its recorded fingerprint is this folder's config."""
    from ropeconv.record import config_fingerprint

    folder = tmp_path / "out"
    shutil.copytree(probed["output"], folder)
    document = {"method": "yarn", "target_context": 256, "trials": [{"number": n} for n in range(7)],
                "best": {"past_ppl": 3.21, "short_ratio": 1.01}, "default": {"past_ppl": 3.5, "short_ratio": 1.04},
                "base": {"past_ppl": 9.9}, "short_context": {"length": 32},
                "text": {"source": "file", "name": "/home/someone/calib.txt"}, "plot": "/home/someone/out/tune.png",
                "config_sha256": config_fingerprint(folder)}
    (folder / "tune.json").write_text(json.dumps(document))
    text = write_card(folder).read_text()
    assert "7 trials" in text and "on the text file calib.txt" in text and "/home/someone" not in text
    assert "| tuned (this model) | 3.21 | ×1.010 |" in text and "| yarn defaults | 3.5 | ×1.040 |" in text
    assert "](tune.png)" not in text  # the plot is not in this folder
    (folder / "tune.png").write_bytes(b"png")
    assert "](tune.png)" in write_card(folder).read_text()
    (folder / "tune.json").write_text(json.dumps({**document, "config_sha256": "sha256:" + "0" * 64}))
    assert "How the scaling was chosen" not in write_card(folder).read_text()


def test_a_rebased_conversion_says_what_it_is(probed, tmp_path):
    """`extend <yarn output> -m linear -f 2 --rebase`: scaled from the unscaled base (L0 64) to 128,
    reproducible only with --rebase, and not probed (the yarn output's probe.json is not this one's)."""
    from ropeconv import api

    rebased = tmp_path / "rebased"
    api.extend(str(probed["output"]), "linear", factor=2, output=rebased, rebase=True)
    if not (rebased / "probe.json").exists():  # the writer may leave it behind; the card must not trust it
        (rebased / "probe.json").write_bytes((probed["output"] / "probe.json").read_bytes())
    text = write_card(rebased).read_text()
    assert "extended from **64** to **128** tokens using linear interpolation" in text
    assert "--method linear --factor 2 --rebase" in text
    assert "Verdict" not in text and "This output has not been probed" in text
    plain = tmp_path / "plain"
    api.extend(str(probed["source"]), "linear", factor=2, output=plain)
    assert "--rebase" not in write_card(plain).read_text()


def test_a_fine_tuned_output_says_its_weights_were_trained_and_shows_the_evaluation(tmp_path):
    """A `ropeconv finetune` output must not claim 'the weights were not changed': its card says what training
    ran (from the record) and shows finetune.json's evaluation before and after."""
    folder = folder_with(tmp_path)
    record = json.loads((folder / "ropeconv.json").read_text())
    record["finetune"] = {"steps": 200, "tokens": 409600, "window": 2048, "position_skips": True, "lora": 16}
    (folder / "ropeconv.json").write_text(json.dumps(record))
    summary = lambda past, overall: {"ppl_beyond": past, "ppl": overall}  # noqa: E731
    (folder / "finetune.json").write_text(json.dumps({"eval": {"length": 16384, "before": {
        "unscaled": summary(70.6, 20.1), "training_free": summary(4.4, 5.2)}, "after": summary(4.1, 5.0)}}))
    text = ModelCard.load(write_card(folder, repo_id="me/ft")).text
    assert "not changed or fine-tuned" not in text
    assert "**The weights were fine-tuned** by `ropeconv finetune`" in text and "200 steps, 409,600 tokens" in text
    assert "LoRA rank 16 merged into the weights" in text and "with PoSE position skips" in text
    assert "| unscaled | 70.6 | 20.1 |" in text and "| fine-tuned (this model) | 4.1 | 5 |" in text
    assert text.index("## Fine-tuning evaluation") < text.index("## Reproduce")
