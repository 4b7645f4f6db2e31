"""llama.cpp's own converter on ropeconv's outputs: SmolLM2-135M (real weights, cut to two layers) is
extended by `ropeconv.api.extend` with each method, converted by llama.cpp's convert_hf_to_gguf.py
(from the llama-cpp-python 0.3.36 source distribution, see tests/engines/venvs.py), and the GGUF's
rope metadata and tensors are compared with what `ropeconv extend` writes on the real SmolLM2 GGUF
directly. They must agree — or a verified llama.cpp rule in `ropeconv.engines.RULES` must name the
difference (and the rule must hold: the difference must be there). The converter runs with the
transformers 4.57.6 llama.cpp's requirements pin; the only stub there is the tokenizer class name a
transformers 5 save writes (tests/engines/llamacpp.py), not RoPE. llama.cpp's loader itself is not run
(compiling it is out of reach here): the GGUF keys are what it reads.

yarn and linear run by default; the other methods carry the `engines` marker (~20 s a conversion).

Every other family the converter registers (tests/engines/cases.py SOURCES but tests/engines/
llamacpp_families.py UNSUPPORTED) runs the same comparison on a tiny random-weight model of it: its
unscaled conversion extended by ropeconv (direct.gguf) against ropeconv's extended folder converted
(converted.gguf); a file that agrees is also checked against the method's meaning (cheap keys and the
rope tensors against `ropeconv.methods.compute`). Stub, not RoPE: for the families in STUB_VOCAB the
converter's set_vocab is replaced by a minimal vocabulary writer (tests/engines/vocab_stub.py), as
their set_vocab needs a sentencepiece tokenizer.model or a tokenizer it knows by hash.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest

from engines.cases import ORIGINAL, SOURCES, build_case, method_params
from engines.llamacpp import convert, rope_metadata, small_smollm2
from engines.llamacpp_families import STUB_VOCAB, UNSUPPORTED, build_model
from ropeconv import api, smollm
from ropeconv.engines import NO_ROPE_KEYS, rules_for
from ropeconv.errors import RopeconvError
from ropeconv.methods import CONVERTIBLE, base_inv_freq
from ropeconv.spec import read_spec

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
        keys["rope.scaling.yarn_log_multiplier"] = meta.get("rope.scaling.yarn_log_multiplier")  # DeepSeek
    for name in TENSORS:
        keys[name] = meta.get(name)
    if keys["rope.scaling.type"] is None and keys["rope.scaling.factor"] is None:
        keys["rope.scaling.type"] = "none"  # llama.cpp: an absent type is linear, an absent factor × 1: none
    if meta.get("arch") in ("phi3", "phimoe"):
        # llama.cpp reads rope.scaling.type only to pick defaults (absent: linear × 1, a no-op) and, in its
        # llama/deci/step35 graphs, LongRoPE; Phi-3 always loads its factor tensors and picks them by n_ctx
        # (vendor/llama.cpp/src/llama-model.cpp load_hparams, get_rope_factors; models/phi3.cpp)
        keys.pop("rope.scaling.type")
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
        assert converted["rope.scaling.type"] == "none" and converted["context_length"] == L0, (rule.computes, converted)
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


# --------------------------------------------------------------------------------------------------
# every other family the converter registers, on a tiny random-weight model

FAMILIES = [f for f in SOURCES if f != "llama" and f not in UNSUPPORTED]
DEFAULT_FAMILY_CASES = ()  # every family case costs two conversions: all carry the engines marker


@pytest.fixture(scope="module")
def families_root(tmp_path_factory):
    return tmp_path_factory.mktemp("llamacpp-families")


@functools.cache
def unscaled(family: str, root: Path) -> tuple[Path, Path]:
    """(the tiny model's folder, its conversion by llama.cpp's converter): built once per family."""
    model = build_model(family, root)
    return model, convert(model, root / f"{family}-base.gguf", family in STUB_VOCAB)


def gguf_params(method: str, model_type: str, rotary_dim: int) -> dict | None:
    # YaRN with the default betas: llama.cpp reads yarn_beta_* for grok and mistral3 only (see ropeconv's
    # GGUF writer), so cases' beta_fast 24 is refused on these GGUFs whatever the converter writes
    if method == "yarn" and not model_type.startswith("deepseek"):
        return None
    return method_params(method, rotary_dim, model_type) or None


def means(method: str, meta: dict, case, rotary_dim: int, params: dict | None) -> None:
    """The converted GGUF carries the method as ropeconv.methods.compute defines it (cheap keys)."""
    inv = case.expected[case.positions[-1]][0]  # static methods: the same at every position
    if method in ("linear", "yarn"):
        assert meta["rope.scaling.type"] == method and same(meta["rope.scaling.factor"], FACTOR), meta
    if method == "yarn":
        assert meta["rope.scaling.original_context_length"] == case.L0 and meta["context_length"] == case.served
    if method == "ntk":  # θ' alone: b_1 = θ'^(-2/d)
        assert same(meta["rope.freq_base"] ** (-2 / rotary_dim), inv[1]), (meta["rope.freq_base"], inv[1])
    if method == "llama3":  # llama.cpp divides the unscaled frequencies by rope_freqs
        base = base_inv_freq(meta["rope.freq_base"], rotary_dim)
        assert all(math.isclose(b / f, want, rel_tol=1e-5) for b, f, want in
                   zip(base, meta["rope_freqs.weight"], inv, strict=True)), meta["rope_freqs.weight"]
    if method == "longrope":
        assert same(meta["rope_factors_long.weight"], params["long_factor"])
        assert same(meta["rope_factors_short.weight"], params["short_factor"])


def family_case(family, method):
    marks = () if f"{family}-{method}" in DEFAULT_FAMILY_CASES else (pytest.mark.engines,)
    return pytest.param(family, method, marks=marks, id=f"{family}-{method}")


@pytest.mark.parametrize("family,method", [family_case(f, m) for f in FAMILIES for m in CONVERTIBLE])
def test_converter_on_every_family(families_root, tmp_path, family, method):
    model, base = unscaled(family, families_root)
    case = build_case(family, method, families_root)  # ropeconv's reading of the family's config
    spec = read_spec(json.loads((model / "config.json").read_text()), original_context=ORIGINAL.get(family))
    params = gguf_params(method, spec.model_type, spec.rotary_dim)
    options = dict(factor=FACTOR, params=params, force=True, original_context=ORIGINAL.get(family))
    if case.refused:  # ropeconv refuses the method for this family's folder: so on this model too
        with pytest.raises(RopeconvError):
            api.extend(str(model), method, output=tmp_path / "hf", **options)
        return
    api.extend(str(model), method, output=tmp_path / "hf", **options)
    converted = effective(rope_metadata(convert(tmp_path / "hf", tmp_path / "converted.gguf",
                                                family in STUB_VOCAB)))
    try:
        api.extend(str(base), method, output=tmp_path / "direct.gguf", **options)
        direct = effective(rope_metadata(tmp_path / "direct.gguf"))
    except RopeconvError as exc:  # the architecture cannot carry the method in a GGUF: ropeconv says why
        assert exc.problem and exc.fix
        direct = None
    rules = rules_for(spec.model_type, method, "llamacpp")
    if not rules:
        assert direct is not None, f"ropeconv refuses {method} on the {family} GGUF, the converter writes {converted}"
        differ = sorted(k for k in direct if not same(direct[k], converted[k]))
        assert differ == [], {k: (converted[k], direct[k]) for k in differ}
        means(method, converted, case, spec.rotary_dim, params)
        return
    (rule,) = rules
    holds(rule, method, direct, converted, case, rope_metadata(base)["context_length"])


def holds(rule, method: str, direct: dict | None, converted: dict, case, base_context: int) -> None:
    """The difference `rule` states is there (and nothing else differs)."""
    # type none: llama.cpp ignores any factor (src/llama-context.cpp); effective() maps "absent, no factor" to none
    plain = converted["rope.scaling.type"] == "none" and not any(converted[t] for t in TENSORS)
    if rule.outcome == "context":  # e.g. linear: the converter advertises L0
        differ = sorted(k for k in direct if not same(direct[k], converted[k]))
        assert differ == ["context_length"] and converted["context_length"] == case.L0, (differ, converted)
        assert direct["context_length"] == case.served
    elif method == "dynamic":  # ropeconv refuses dynamic on a GGUF; the converter writes plain RoPE at L0
        # context_length: the output's max_position_embeddings (L0), or for the families whose converter
        # class ignores it (NO_ROPE_KEYS: Falcon 2048, GLM seq_length) what it writes for the unscaled model
        ignores_length = SOURCES[case.family][0] in NO_ROPE_KEYS
        assert direct is None and plain, converted
        assert converted["context_length"] == (base_context if ignores_length else case.L0), converted
    elif method == "longrope":  # no factor tensors (the type alone, or nothing)
        assert converted["rope.scaling.type"] in ("longrope", "none") and not converted["rope_factors_long.weight"]
        assert direct is None or direct["rope_factors_long.weight"]
    elif method == "llama3":  # no rope_freqs tensor; ropeconv refuses llama3 on such a GGUF
        assert direct is None and plain, converted
    elif method in ("linear", "ntk", "yarn"):  # the scaling (and for some θ') is not written: plain RoPE
        assert plain and direct is not None, converted
        if method == "ntk":
            assert not same(converted["rope.freq_base"], direct["rope.freq_base"]), (converted, direct)
        else:
            assert direct["rope.scaling.type"] == method, direct
    else:
        raise AssertionError(f"no check written for the rule {rule.computes!r}")


def test_converter_reads_the_demo_folder_and_its_extension_as_written(smol, tmp_path):
    """The README's own model takes the llama.cpp path: llama.cpp's converter (transformers 4.57.6) reads the
    demo folder and ropeconv's extension of it as they are. The control, the same folder with the class name
    transformers 5 saves, is refused by the converter — so this test can fail."""
    import json
    import shutil

    assert json.loads((smol / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    rope_metadata(convert(smol, tmp_path / "demo.gguf"))
    extended = tmp_path / "yarn"
    api.extend(str(smol), "yarn", factor=FACTOR, output=extended)
    assert rope_metadata(convert(extended, tmp_path / "yarn.gguf"))["rope.scaling.type"] == "yarn"
    control = Path(shutil.copytree(smol, tmp_path / "control"))
    config = json.loads((control / "tokenizer_config.json").read_text())
    (control / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "TokenizersBackend"}))
    with pytest.raises(RuntimeError, match="TokenizersBackend"):
        convert(control, tmp_path / "control.gguf")
