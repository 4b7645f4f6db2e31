"""The probe on a real model (SmolLM2-135M, offline): the verdict tells a working context extension
from a model run past its trained window.

Two forward passes of 12,288 tokens (1.5 × L0) on CPU. Measured on this text (positions past
L0 = 8192 against the second half of the trained window): unscaled climbs to ×4.7 (and ×143 at
16k), YaRN ×4 stays at ×1.3.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ropeconv.cli import app
from ropeconv.errors import EXIT_FAILED, EXIT_OK

LENGTH = "12288"

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


def probe(model) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["probe", str(model), "--lengths", LENGTH, "--device", "cpu", "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_yarn_x4_passes(yarn_folder):
    code, report = probe(yarn_folder)
    assert code == EXIT_OK, report
    assert report["verdict"]["status"] == "pass"
    check = report["verdict"]["checks"][0]
    assert check["name"] == "past_trained_context" and check["value"] < 1.6
    run = report["results"][0]["model"]
    assert run["positions"] == 12287 and report["trained_context"] == 8192
    assert run["ppl_beyond"] < 8  # level past L0
    assert json.loads((yarn_folder / "probe.json").read_text())["verdict"]["status"] == "pass"


def test_unscaled_model_fails_past_its_window(smollm_folder):
    code, report = probe(smollm_folder)
    assert code == EXIT_FAILED, report
    check = report["verdict"]["checks"][0]
    assert not check["passed"] and check["value"] > 3  # it climbs: ×4.7 measured
    last = report["results"][0]["model"]["buckets"][-1]
    assert last["region"] == "beyond" and last["ppl"] > 10
