"""Pictures: per dimension pair, wavelength and the scale each method applies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ropeconv.methods import base_inv_freq, wavelengths
from ropeconv.plot import method_scales, plot_from_inspect, plot_png, terminal_chart
from ropeconv.spec import read_spec

CORPUS = Path(__file__).parent / "fixtures" / "configs"


def spec_of(name: str):
    return read_spec(json.loads((CORPUS / f"{name}.json").read_text()))


def test_method_scales():
    spec = spec_of("qwen2.5-7b-instruct")
    scales = method_scales(spec, ["linear", "ntk", "yarn", "llama3", "dynamic"], 4.0)
    assert all(s == pytest.approx(4.0) for s in scales["linear"])
    assert scales["ntk"][0] == pytest.approx(1.0) and scales["ntk"][-1] == pytest.approx(4.0)
    waves = wavelengths(base_inv_freq(spec.theta, spec.rotary_dim))
    for j, w in enumerate(waves):  # YaRN keeps short wavelengths and interpolates those past L0
        if w < 1000:
            assert scales["yarn"][j] == pytest.approx(1.0)
        if w > 2 * spec.original_context:
            assert scales["yarn"][j] == pytest.approx(4.0, rel=1e-5)
    assert "longrope" not in method_scales(spec, ["longrope"], 4.0)  # needs factor lists


def test_terminal_chart_marks_L0_and_target():
    spec = spec_of("qwen2.5-7b-instruct")
    text = terminal_chart(spec, ["linear", "yarn"], 4.0)
    lines = text.splitlines()
    assert "L0 32768" in lines[0] and "target 131072" in lines[0]
    assert any("wavelength ≥ L0" in line for line in lines)
    assert any("wavelength ≥ target" in line for line in lines)
    pair0 = next(line for line in lines if line.strip().startswith("0 "))
    assert "████████    4" in pair0  # linear: full bar at pair 0
    assert pair0.rstrip().endswith("1")  # yarn keeps pair 0
    assert len(lines) < 30


def test_plot_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot_png(spec_of("llama-3.1-8b-instruct"), ["linear", "yarn", "llama3"], 8.0, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_inspect_plot_through_the_cli(tmp_path):
    from typer.testing import CliRunner

    from ropeconv.cli import app

    (tmp_path / "config.json").write_text((CORPUS / "qwen2.5-7b-instruct.json").read_text())
    out = tmp_path / "p.png"
    result = CliRunner().invoke(app, ["inspect", str(tmp_path), "--method", "yarn", "--factor", "4",
                                      "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG" and f"wrote {out}" in result.output


def test_inspect_plot_without_matplotlib_is_an_error_not_a_silent_success(tmp_path, monkeypatch):
    import sys

    from typer.testing import CliRunner

    from ropeconv.cli import app
    from ropeconv.errors import EXIT_BAD_INPUT

    # Stub: matplotlib made unimportable (sys.modules entry None), as on an install without the extra.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    (tmp_path / "config.json").write_text((CORPUS / "qwen2.5-7b-instruct.json").read_text())
    out = tmp_path / "p.png"
    result = CliRunner().invoke(app, ["inspect", str(tmp_path), "--plot", str(out)])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "matplotlib, which is not installed" in result.output and "pip install 'ropeconv[plot]'" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("factor", [4.0, 32.0])
def test_scale_axis_reads_plain_numbers(factor):
    pytest.importorskip("matplotlib")
    from ropeconv.plot import figure, scale_ticks

    fig = figure(spec_of("llama-3.1-8b-instruct"), ["linear", "ntk", "yarn", "llama3"], factor)
    fig.canvas.draw()
    scale_axis = fig.axes[1]
    labels = [t.get_text() for t in scale_axis.get_yticklabels() if t.get_text()]
    labels += [t.get_text() for t in scale_axis.get_yticklabels(minor=True) if t.get_text()]
    assert labels and not [text for text in labels if "10" in text and ("×" in text or "^" in text)], labels
    assert [float(t.replace("−", "-")) for t in labels[:3]] == [1, 2, 4]
    assert scale_ticks(factor)[-1] >= factor and scale_ticks(4.0) == [1, 2, 4]


def test_plot_from_inspect_uses_the_conversion_scales(tmp_path):
    from ropeconv import api

    (tmp_path / "config.json").write_text((CORPUS / "mistral-7b-v0.1.json").read_text())
    result = api.inspect(str(tmp_path), method="yarn", factor=4)
    text = plot_from_inspect(result, tmp_path / "x.png")
    assert text == f"wrote {tmp_path / 'x.png'}" and (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"
    # the plot's own per-method scales agree with what inspect computed for the conversion
    ours = method_scales(result["spec"], ["yarn"], 4.0)["yarn"]
    assert ours == pytest.approx([d["new_scale"] for d in result["dimensions"]], rel=1e-9)
