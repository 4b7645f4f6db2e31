"""The RoPE math against transformers' own ROPE_INIT_FUNCTIONS, on a grid of real settings."""

from __future__ import annotations

import itertools

import pytest

from conftest import rel_err
from ropeconv.methods import (CONVERTIBLE, METHODS, Basis, base_inv_freq, compute, get_method, ntk_theta,
                              yarn_ramp_bounds)
from ropeconv.errors import RopeconvError

GRID = list(itertools.product([64, 128, 256], [1e4, 5e5, 1e6], [2.0, 4.0, 32.0], [1.0, 0.5, 0.25], [2048, 8192, 32768]))
TOL = 1e-6

VARIANTS = {
    "linear": [{}],
    "dynamic": [{}],
    "yarn": [{}, {"beta_fast": 16.0, "beta_slow": 2.0, "truncate": False},
             {"mscale": 0.707, "mscale_all_dim": 0.707}, {"mscale": 1.0, "mscale_all_dim": 0.5},
             {"attention_factor": 1.3}],
    "llama3": [{"low_freq_factor": 1.0, "high_freq_factor": 4.0}, {"low_freq_factor": 2.0, "high_freq_factor": 8.0}],
}


def transformers_rope(rope_type, head_dim, theta, factor, partial, L0, params, seq_len=None, max_pos=None):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rp = {"rope_type": rope_type, "rope_theta": theta, "factor": factor, "partial_rotary_factor": partial, **params}
    if rope_type in ("yarn", "llama3", "longrope"):
        rp["original_max_position_embeddings"] = L0
    cfg = LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim,
                      max_position_embeddings=max_pos or (L0 if rope_type == "dynamic" else int(L0 * factor)),
                      rope_parameters=rp)
    inv, attention = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu", seq_len=seq_len)
    return inv.double().tolist(), attention


@pytest.mark.parametrize("method", sorted(VARIANTS))
def test_methods_match_transformers_on_grid(method):
    worst = 0.0
    for head_dim, theta, factor, partial, L0 in GRID:
        dim = int(head_dim * partial)
        for params in VARIANTS[method]:
            for seq_len in ([None, 3 * L0] if method == "dynamic" else [None]):
                ref, ref_att = transformers_rope(method, head_dim, theta, factor, partial, L0, params, seq_len)
                ours, att = compute(method, Basis(theta, dim, L0), {"factor": factor, **params}, seq_len)
                err = max(rel_err(ours, ref), abs(att - ref_att) / ref_att)
                assert err < TOL, (method, head_dim, theta, factor, partial, L0, params, seq_len, err)
                worst = max(worst, err)
    assert worst > 0  # the comparison really ran on float32 reference values


def test_longrope_matches_transformers():
    for head_dim, theta, factor, partial, L0 in GRID[::7]:
        dim = int(head_dim * partial)
        short = [1.0 + 0.01 * j for j in range(dim // 2)]
        long = [1.0 + 0.37 * j for j in range(dim // 2)]
        for params in ({"short_factor": short, "long_factor": long},
                       {"short_factor": short, "long_factor": long, "attention_factor": 1.1}):
            for seq_len in (None, 2 * L0):
                ref, ref_att = transformers_rope("longrope", head_dim, theta, factor, partial, L0, params, seq_len)
                ours, att = compute("longrope", Basis(theta, dim, L0), {"factor": factor, **params}, seq_len)
                assert rel_err(ours, ref) < TOL
                assert abs(att - ref_att) / ref_att < TOL


def test_ntk_is_default_rope_with_new_theta():
    """Static NTK written as a plain θ: transformers' default RoPE at θ' must equal ropeconv's ntk.

    Phi's rotary module is used because it honours partial_rotary_factor (Llama's ignores it)."""
    from transformers import PhiConfig
    from transformers.models.phi.modeling_phi import PhiRotaryEmbedding

    for head_dim, theta, factor, partial, L0 in GRID[::5]:
        dim = int(head_dim * partial)
        new_theta = ntk_theta(theta, dim, factor)
        cfg = PhiConfig(hidden_size=head_dim * 2, num_attention_heads=2, partial_rotary_factor=partial,
                        rope_theta=new_theta)
        ref = PhiRotaryEmbedding(cfg).inv_freq.double().tolist()
        ours, att = compute("ntk", Basis(theta, dim, L0), {"factor": factor})
        assert rel_err(ours, ref) < TOL and att == 1.0


def test_reference_checks_computed_by_transformers():
    """ROPE.md's worked example, with every number taken from transformers, not copied."""
    ref, ref_att = transformers_rope("yarn", 128, 1e4, 8.0, 1.0, 4096, {})
    ours, att = compute("yarn", Basis(1e4, 128, 4096), {"factor": 8.0})
    assert att == pytest.approx(ref_att, rel=1e-12)
    low, high = yarn_ramp_bounds(Basis(1e4, 128, 4096), {})
    base = base_inv_freq(1e4, 128)
    # below `low` every pair is kept, above `high` every pair is interpolated — as transformers has it
    assert all(abs(ref[j] / base[j] - 1) < 1e-6 for j in range(int(low) + 1))
    assert all(abs(base[j] / ref[j] - 8) < 1e-5 for j in range(int(high), 64))
    assert rel_err(ours, ref) < TOL
    # dynamic at n = 32768 with L = 4096: transformers' θ equals ours with multiplier s·n/L − (s−1)
    ref_dyn, _ = transformers_rope("dynamic", 128, 1e4, 8.0, 1.0, 4096, {}, seq_len=32768)
    assert rel_err(base_inv_freq(1e4 * (8 * 32768 / 4096 - 7) ** (128 / 126), 128), ref_dyn) < TOL


def test_registry_lists_every_method_with_its_descriptions():
    assert CONVERTIBLE == ["linear", "ntk", "dynamic", "yarn", "llama3", "longrope"]
    assert {"alibi", "absolute"} <= set(METHODS) and not METHODS["alibi"].convertible
    for m in METHODS.values():
        assert m.summary and m.training and m.short_context and m.engines


def test_unknown_method_suggests_the_closest():
    with pytest.raises(RopeconvError, match="did you mean 'yarn'"):
        get_method("yarm")
    with pytest.raises(RopeconvError, match="not a RoPE scaling method"):
        get_method("alibi")


# ---------------------------------------------------------------------------------------------------------
# one row per method: every table a method needs (CONTRIBUTING.md "Adding a method")


def missing_rows(methods) -> list[str]:
    """The table rows `methods` lack: each format adapter's method table and the engines' facts (the
    rope type each method's output carries, in every engine's `types`)."""
    from ropeconv.engines import ENGINES
    from ropeconv.formats.gguf import GGUF_METHODS
    from ropeconv.formats.hf import HF_METHODS

    missing = [f"ropeconv/formats/hf.py HF_METHODS[{m!r}]" for m in methods if m not in HF_METHODS]
    missing += [f"ropeconv/formats/gguf.py GGUF_METHODS[{m!r}]" for m in methods if m not in GGUF_METHODS]
    written = {HF_METHODS[m].rope_type for m in methods if m in HF_METHODS}
    missing += [f"ropeconv/engines.py ENGINES {e.key}.types[{t!r}]" for t in sorted(written) for e in ENGINES
                if t not in e.types.value]
    return missing


def test_every_convertible_method_has_a_row_in_every_adapter_and_in_the_engine_facts():
    assert missing_rows(CONVERTIBLE) == [], "add the rows named (see CONTRIBUTING.md)"


def test_a_method_without_its_rows_is_named():
    # the check above must be able to fail, naming each missing row
    missing = missing_rows([*CONVERTIBLE, "newrope"])
    assert "ropeconv/formats/hf.py HF_METHODS['newrope']" in missing
    assert "ropeconv/formats/gguf.py GGUF_METHODS['newrope']" in missing


def test_the_adapters_have_no_row_for_a_method_that_is_not_convertible():
    from ropeconv.formats.gguf import GGUF_METHODS
    from ropeconv.formats.hf import HF_METHODS

    assert set(HF_METHODS) == set(CONVERTIBLE) and set(GGUF_METHODS) == set(CONVERTIBLE)


def test_the_methods_prose_names_every_engine_that_does_not_honour_the_method():
    """`ropeconv methods` and the dynamic warning say in words what engines.py holds as facts: an engine
    that drops, refuses or runs a method statically is named there."""
    from ropeconv.engines import ENGINES, HONOURED
    from ropeconv.formats.hf import HF_METHODS, RopePlan

    for name in CONVERTIBLE:
        row = HF_METHODS[name]
        plan = RopePlan(name, 4.0, {}, 1e4, 1e4, 64, 4096, 16384, [], 1.0, False)
        said = METHODS[name].engines + " " + (row.warning(plan) or "")
        for engine in ENGINES:
            if engine.types.value[row.rope_type] != HONOURED:
                assert engine.name.split(" ")[0] in said, f"{name}: {engine.name} is not named"


def test_the_readme_method_table_is_the_rows_themselves():
    """The README's per-method table is generated from the rows (scripts/engine_rules_table.py)."""
    from pathlib import Path

    from ropeconv.portability import methods_markdown

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- method-table:start -->\n", "\n<!-- method-table:end -->"
    if start not in readme:
        pytest.skip("README.md has no method-table markers yet (the lead adds them)")
    assert readme.split(start, 1)[1].split(end, 1)[0] == methods_markdown(), "run: python scripts/engine_rules_table.py"
