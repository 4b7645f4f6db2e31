"""The probe on a real model (SmolLM2-135M, offline): the verdict tells a working context extension
from a model run past its trained window — the demo's own probe (`extend --probe` runs `--quick`).

Two forward passes of 12,288 tokens (1.5 × L0) on CPU, one per model; the 4,096-token length is the
first 4,096 tokens of the same pass. Measured on this text (positions past L0 = 8192 against the
second half of the trained window): unscaled climbs to ×4.7 (and ×143 at 16k), YaRN ×4 stays at ×1.3.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ropeconv.cli import app
from ropeconv.errors import EXIT_OK

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm_folder():
    from ropeconv.smollm import ensure_folder

    return ensure_folder()


@pytest.fixture(scope="module")
def yarn_folder(smollm_folder, tmp_path_factory):
    from ropeconv import api

    out = tmp_path_factory.mktemp("smollm") / "yarn-x4"
    api.extend(str(smollm_folder), "yarn", factor=4, output=out)
    return out


@pytest.fixture(scope="module")
def quick(yarn_folder, smollm_folder):
    result = CliRunner().invoke(app, ["probe", str(yarn_folder), "--against", str(smollm_folder), "--quick",
                                      "--device", "cpu", "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_yarn_x4_passes(quick, yarn_folder):
    code, report = quick
    assert code == EXIT_OK, report
    assert report["lengths"] == [4096, 12288] and report["trained_context"] == 8192
    checks = {c["name"]: c for c in report["verdict"]["checks"]}
    assert report["verdict"]["status"] == "pass"
    assert checks["past_trained_context"]["value"] < 1.6
    assert checks["short_context"]["value"] < 1.25  # static YaRN costs ≈ 12 % at 4k
    short, long = report["results"]
    assert long["model"]["positions"] == 12287 and long["model"]["ppl_beyond"] < 8  # level past L0
    assert short["model"]["prefix_of"] == 12288 and short["model"]["positions"] == 4095
    assert [s["length"] for s in report["estimate"]["steps"]] == [12288, 12288]  # one pass per model
    assert report["full_probe"]["lengths"] == [4096, 16384, 32768] and report["full_probe"]["estimated_seconds"] > 0
    assert json.loads((yarn_folder / "probe.json").read_text())["verdict"]["status"] == "pass"


def test_unscaled_model_fails_where_the_extension_passes(quick):
    _, report = quick
    source_check = report["verdict"]["source_checks"][0]
    assert source_check["length"] == 12288 and not source_check["passed"]
    assert source_check["value"] > 3  # it climbs: ×4.7 measured
    last = report["results"][1]["against"]["buckets"][-1]
    assert last["region"] == "beyond" and last["ppl"] > 10


def test_the_card_shows_the_real_probe(quick, yarn_folder):
    from huggingface_hub import ModelCard

    from ropeconv.card import write_card

    _, report = quick
    card = ModelCard.load(write_card(yarn_folder))
    assert "Verdict: **passed**" in card.text and "from **8,192** to **32,768** tokens" in card.text
    assert "| 12,288 | " in card.text and "| 4,096 | " in card.text
    assert "Past L0 the source on its own climbs against the second half of its trained window (×4." in card.text
    metrics = card.data.to_dict()["model-index"][0]["results"][0]["metrics"]
    assert [m["value"] for m in metrics] == [run["model"]["ppl"] for run in report["results"]]
