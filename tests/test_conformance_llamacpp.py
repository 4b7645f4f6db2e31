"""llama.cpp's own converter on ropeconv's outputs: SmolLM2-135M (real weights, cut to two layers) is
extended by `ropeconv.api.extend` with each method, converted by llama.cpp's convert_hf_to_gguf.py
(from the llama-cpp-python 0.3.36 source distribution, see tests/engines/venvs.py), and the GGUF's
rope metadata and tensors are compared with what `ropeconv extend` writes on the real SmolLM2 GGUF
directly. They must agree — or a verified llama.cpp rule in `ropeconv.engines.RULES` must name the
difference (and the rule must hold: the difference must be there). Nothing is stubbed; llama.cpp's
loader itself is not run (compiling it is out of reach here): the GGUF keys are what it reads.

yarn and linear run by default; the other methods carry the `engines` marker (~20 s a conversion).
"""

from __future__ import annotations

import math

import pytest

from engines.llamacpp import convert, rope_metadata, small_smollm2
from ropeconv import api, smollm
from ropeconv.engines import rules_for

FACTOR = 4
L0 = 8192
LONGROPE = {"short_factor": [1.0 + 0.01 * j for j in range(32)], "long_factor": [1.0 + 0.25 * j for j in range(32)]}
METHODS = {"yarn": {}, "linear": {}, "ntk": {}, "llama3": {}, "longrope": LONGROPE, "dynamic": {}}
DEFAULT_RUN = ("yarn", "linear")
TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    return small_smollm2(smollm.ensure_folder(), tmp_path_factory.mktemp("smollm2") / "SmolLM2-2layers")


def effective(meta: dict) -> dict:
    """The keys llama.cpp's loader computes with (an original length only matters to YaRN)."""
    keys = {k: meta.get(k) for k in ("context_length", "rope.freq_base", "rope.dimension_count",
                                     "rope.scaling.type", "rope.scaling.factor")}
    if meta.get("rope.scaling.type") == "yarn":
        keys["rope.scaling.original_context_length"] = meta.get("rope.scaling.original_context_length")
        keys["rope.scaling.attn_factor"] = meta.get("rope.scaling.attn_factor")  # absent: llama.cpp's default
    for name in TENSORS:
        keys[name] = meta.get(name)
    return keys


def same(a, b) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


@pytest.mark.parametrize("method", [m if m in DEFAULT_RUN else pytest.param(m, marks=pytest.mark.engines)
                                    for m in METHODS])
def test_converter_writes_what_ropeconv_writes_on_the_gguf(smol, tmp_path, method):
    params = METHODS[method] or None
    out = tmp_path / "hf"
    api.extend(str(smol), method, factor=FACTOR, params=params, output=out)
    converted = effective(rope_metadata(convert(out, tmp_path / "converted.gguf")))
    rules = rules_for("llama", method, "llamacpp")
    served = L0 * FACTOR
    if method == "dynamic":  # ropeconv refuses dynamic on a GGUF: there is no direct file to compare
        (rule,) = rules
        assert converted["rope.scaling.type"] is None and converted["context_length"] == L0, (rule.computes, converted)
        return
    api.extend(str(smollm.gguf_path()), method, factor=FACTOR, params=params, output=tmp_path / "direct.gguf")
    direct = effective(rope_metadata(tmp_path / "direct.gguf"))
    differ = sorted(k for k in direct if not same(direct[k], converted[k]))
    if not rules:
        assert differ == [], {k: (converted[k], direct[k]) for k in differ}
        return
    (rule,) = rules
    if rule.outcome == "context":  # e.g. linear: the converter advertises L0
        assert differ == ["context_length"] and converted["context_length"] == L0 and direct["context_length"] == served
    else:  # e.g. longrope on llama: the converter writes the type without the factor tensors
        assert converted["rope.scaling.type"] == method and not converted["rope_factors_long.weight"], rule.computes
        assert direct["rope_factors_long.weight"] and "rope_factors_long.weight" in differ
