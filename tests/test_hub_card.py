"""The model card written into an output folder (no server needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import ModelCard

from ropeconv.card import MARKER, SOURCE_START, build_card, probe_rows, write_card

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
PROBE = {"verdict": {"passed": True, "summary": "perplexity stays flat past L0"},
         "dataset": "python stdlib source",
         "results": [{"length": 4096, "perplexity": 8.7, "baseline_perplexity": 7.73},
                     {"length": 16384, "perplexity": 7.37, "baseline_perplexity": 443.0}]}


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
    path = write_card(folder_with(tmp_path, probe=PROBE), repo_id="me/base-model-yarn-x4")
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["base_model"] == "org/base-model"
    assert data["tags"] == ["ropeconv", "rope-scaling", "context-extension", "yarn"]
    assert (data["license"], data["license_name"], data["pipeline_tag"], data["library_name"]) == (
        "llama3.1", "llama3.1", "text-generation", "transformers")
    assert data["language"] == ["en", "de"]
    metrics = data["model-index"][0]["results"][0]["metrics"]
    assert [(m["type"], m["value"]) for m in metrics] == [("perplexity", 8.7), ("perplexity", 7.37)]  # not the baseline
    text = card.text
    assert "The weights were not changed or fine-tuned." in text
    assert "**8,192** to **32,768** tokens using YaRN by a factor of 4" in text
    assert "| rope_type | default | yarn |" in text and "| max_position_embeddings | 8,192 | 32,768 |" in text
    assert 'from_pretrained("me/base-model-yarn-x4"' in text
    assert "vllm serve me/base-model-yarn-x4 --max-model-len 32768" in text
    assert "llama-server -m base-model-yarn-x4.gguf -c 32768" in text
    assert "Verdict: **passed** — perplexity stays flat past L0" in text
    assert "| length | perplexity | baseline_perplexity |" in text and "| 16,384 | 7.37 | 443 |" in text
    assert f"ropeconv extend org/base-model@{'a' * 40} --method yarn --factor 4 --beta-fast 32 --beta-slow 1" in text
    assert text.index("## Original model card") > text.index("## Reproduce")
    assert "Trained by someone else. Cite them." in text and "[org/base-model]" in text


def test_rewriting_the_card_keeps_the_source_card_once(tmp_path):
    folder = folder_with(tmp_path)
    first = write_card(folder).read_text()
    (folder / "probe.json").write_text(json.dumps(PROBE))
    second = write_card(folder).read_text()
    assert second.count("Trained by someone else.") == 1 and second.count(SOURCE_START) == 1
    assert "## Probe" in second and "## Probe" not in first
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
    assert "Verdict: **failed**" in text and "| 8192 | 99 |" in text
    assert card.data.to_dict()["tags"][-1] == "linear"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not changed or fine-tuned" in write_card(empty).read_text()


def test_probe_rows_reads_several_shapes():
    assert probe_rows({"rows": [{"tokens": 1, "ppl": 2.0}]}) == [{"tokens": 1, "ppl": 2.0}]
    assert probe_rows({"perplexity": {"4096": 3.0}}) == [{"length": "4096", "perplexity": 3.0}]
    assert probe_rows({"verdict": "pass"}) == []
    assert build_card({}, {"results": [{"length": 8, "perplexity": float("nan")}]}).data.eval_results is None
