"""llama.cpp itself on the GGUF files ropeconv writes (needs llama-cpp-python; marker `llamacpp`, not in the
default run).

    pip install "ropeconv[llamacpp]"        # builds llama.cpp from source (about 20 minutes on 2 cores)
    pytest -m llamacpp tests/test_llamacpp.py -s

SmolLM2-135M (the packaged Q4_1 GGUF, trained at 8192 tokens) extended ×4 by ropeconv with each method
llama.cpp can run. What llama.cpp reports it runs with (its own load log, `ropeconv.probe.llamacpp`) must be
what the method means; `ropeconv probe FILE.gguf` runs in llama.cpp and keeps yarn level past L0 where the
unscaled file climbs; and llama.cpp's per-position losses agree with transformers' on the folder unpacked
from the same GGUF, extended the same way. Nothing is stubbed.

Lengths: ROPECONV_LLAMACPP_TOKENS (default 12288 = 1.5 × L0, where the unscaled file climbs: at 10240 it is
still level, so the control below could not fail) for the probe past L0,
ROPECONV_LLAMACPP_AGREE_TOKENS (default 2048) for the agreement.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.llamacpp
llama_cpp = pytest.importorskip("llama_cpp")

from ropeconv import api  # noqa: E402
from ropeconv.probe import llamacpp, run_probe  # noqa: E402
from ropeconv.probe import text as texts  # noqa: E402
from ropeconv.smollm import THETA, TRAINED_CONTEXT, gguf_path  # noqa: E402

N_TOKENS = int(os.environ.get("ROPECONV_LLAMACPP_TOKENS", "12288"))
AGREE_TOKENS = int(os.environ.get("ROPECONV_LLAMACPP_AGREE_TOKENS", "2048"))
FACTOR = 4
ROTARY_DIM = 64  # SmolLM2's head_dim


@pytest.fixture(scope="module")
def smol() -> Path:
    return gguf_path()


@pytest.fixture(scope="module")
def extended(smol, tmp_path_factory) -> dict[str, Path]:
    """SmolLM2's GGUF extended ×4 by ropeconv with each method llama.cpp runs."""
    root = tmp_path_factory.mktemp("llamacpp")
    out = {}
    for method in ("yarn", "linear", "ntk", "llama3"):
        out[method] = root / f"smol-{method}-x4.gguf"
        api.extend(str(smol), method, factor=FACTOR, output=str(out[method]))
    return out


def rope_of(path: Path, **overrides) -> llamacpp.RopeArgs:
    loaded = llamacpp.load(path, 512, rope_overrides=overrides or None)
    return loaded.rope


# ---- what llama.cpp runs with -----------------------------------------------------------------------------

def test_yarn_runs_as_yarn(extended):
    rope = rope_of(extended["yarn"])
    assert (rope.scaling, rope.freq_scale, rope.n_ctx_orig_yarn, rope.ext_factor) == ("yarn", 0.25, 8192, 1.0)
    assert rope.freq_base == THETA and rope.n_ctx_train == TRAINED_CONTEXT * FACTOR


def test_linear_runs_as_linear(extended):
    rope = rope_of(extended["linear"])
    assert (rope.scaling, rope.freq_scale, rope.freq_base, rope.ext_factor) == ("linear", 0.25, THETA, 0.0)


def test_ntk_runs_with_the_raised_theta(extended):
    rope = rope_of(extended["ntk"])
    d = ROTARY_DIM
    assert rope.freq_base == pytest.approx(THETA * FACTOR ** (d / (d - 2)), rel=1e-6)  # θ' = θ·s^(d/(d−2))
    assert rope.freq_scale == 1.0 and rope.scaling != "yarn"


def test_llama3_runs_with_its_frequency_tensor(smol, extended):
    from ropeconv.gguf_io import open_gguf

    rope = rope_of(extended["llama3"])
    assert rope.freq_scale == 1.0 and rope.freq_base == THETA and rope.scaling != "yarn"
    # the rope_freqs tensor is in the file, and llama.cpp loaded it: it refuses a file holding a tensor it
    # does not use ("wrong number of tensors"), so its tensor count includes rope_freqs
    names = [t.name for t in open_gguf(extended["llama3"]).tensors]
    assert "rope_freqs.weight" in names and rope.n_tensors == len(names) == rope_of(smol).n_tensors + 1


@pytest.fixture(scope="module")
def override_lines() -> dict[str, str]:
    """The llama.cpp runtime-override line `ropeconv extend` prints for SmolLM2's folder, per method (a dry run)."""
    from ropeconv.smollm import ensure_folder

    lines = {}
    for method in ("yarn", "linear", "ntk"):
        report = api.extend(str(ensure_folder()), method, factor=FACTOR, dry_run=True)
        (lines[method],) = [line["command"] for line in report["launch"]
                            if line["engine"] == "llama.cpp" and line["kind"] == "override"]
    return lines


@pytest.mark.parametrize("method", ["yarn", "linear", "ntk"])
def test_the_printed_override_line_runs_the_rope_of_the_converted_file(smol, extended, override_lines, method):
    """llama-server is not built here (LLAMA_BUILD_SERVER=OFF), so the printed line is not run as a process:
    its RoPE flags (e.g. --rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 8192) are given to llama.cpp's
    context through llama-cpp-python's equivalent arguments, on the ORIGINAL file. What llama.cpp then runs
    equals what it runs for ropeconv's converted file."""
    import shlex

    overrides = llamacpp.override_kwargs(shlex.split(override_lines[method]))
    assert overrides  # the line carries RoPE flags
    overridden, converted = rope_of(smol, **overrides), rope_of(extended[method])
    assert (overridden.runtime_scaling, overridden.ext_factor) == (converted.runtime_scaling, converted.ext_factor)
    assert (overridden.freq_base, overridden.freq_scale) == pytest.approx((converted.freq_base, converted.freq_scale),
                                                                          rel=1e-6)
    assert rope_of(smol).freq_scale == 1.0 and rope_of(smol).freq_base == THETA  # without the flags: unscaled


# ---- the probe through llama.cpp --------------------------------------------------------------------------

def test_probe_gguf_yarn_stays_level_past_L0_where_the_original_climbs(smol, extended, tmp_path):
    started = time.perf_counter()
    result = run_probe(extended["yarn"], against=smol, lengths=[N_TOKENS], progress=False)
    seconds = time.perf_counter() - started
    print(f"\nprobe in llama.cpp, yarn x4 against the original, {N_TOKENS} tokens: {seconds:.0f} s")
    assert result["engine"] == "llama.cpp"
    run = result["results"][0]
    print({role: (run[role]["ppl_inside_second_half"], run[role]["ppl_beyond"]) for role in ("against", "model")})
    assert result["verdict"]["status"] == "pass", result["verdict"]
    # the control: the unscaled file, run past its trained length, fails the same threshold
    assert not all(check["passed"] for check in result["verdict"]["source_checks"])
    assert run["model"]["ppl_beyond"] < run["against"]["ppl_beyond"]
    rope = result["llama_cpp"]["rope"]
    assert rope["model"]["scaling"] == "yarn" and rope["against"]["freq_scale"] == 1.0
    assert result["llama_cpp"]["build"].startswith("llama-cpp-python ")
    # a ropeconv output: the result is saved beside it, never inside the file
    saved = Path(result["saved"])
    assert saved == extended["yarn"].with_name(extended["yarn"].name + ".probe.json")
    assert json.loads(saved.read_text())["llama_cpp"]["rope"]["model"]["n_ctx_orig_yarn"] == 8192


def test_the_cli_probes_a_gguf_and_shows_the_rope_it_ran(smol, tmp_path):
    from typer.testing import CliRunner

    from ropeconv.cli import app

    plain = tmp_path / "smol.gguf"
    plain.symlink_to(smol)  # the packaged file, seen from a folder the test may write in
    result = CliRunner().invoke(app, ["probe", str(plain), "--lengths", "512"])
    assert result.exit_code == 0, result.output
    assert "llama.cpp RoPE as run" in result.output and "scaling linear" in result.output
    assert "estimated time" in result.output and "[1/1]" in result.output
    assert not list(tmp_path.glob("*.probe.json"))  # not a ropeconv output: nothing saved


# ---- agreement with the transformers probe ----------------------------------------------------------------

@pytest.fixture(scope="module")
def yarn_folder(tmp_path_factory) -> Path:
    """The folder unpacked from the same GGUF (ropeconv.smollm), extended yarn ×4 the same way."""
    from ropeconv.smollm import ensure_folder

    folder = tmp_path_factory.mktemp("hf") / "smol-yarn-x4"
    api.extend(str(ensure_folder()), "yarn", factor=FACTOR, output=str(folder))
    return folder


def test_llama_cpp_losses_agree_with_transformers_per_position(extended, yarn_folder):
    from ropeconv.probe.backend import LlamaCppBackend, TransformersBackend
    from ropeconv.probe.measure import pick_dtype

    folder = yarn_folder
    text = texts.stdlib_text()
    hf = TransformersBackend(device="cpu", torch_dtype=pick_dtype("cpu", "float32"))
    cpp = LlamaCppBackend(n_ctx=AGREE_TOKENS)
    losses, ids, seconds = {}, {}, {}
    for name, backend, path in (("transformers", hf, folder), ("llama.cpp", cpp, extended["yarn"])):
        ids[name] = texts.tokenize(backend.tokenizer(path), text, AGREE_TOKENS)
        loaded = backend.load(path)
        started = time.perf_counter()
        losses[name] = np.asarray([float(v) for v in backend.token_losses(loaded, ids[name], 1024)])
        seconds[name] = time.perf_counter() - started
        loaded = None
        backend.release()
    assert ids["transformers"] == ids["llama.cpp"]  # the GGUF's own tokenizer makes the same tokens
    a, b = losses["transformers"], losses["llama.cpp"]
    correlation = float(np.corrcoef(a, b)[0, 1])
    print(f"\n{AGREE_TOKENS} tokens: correlation {correlation:.4f}; perplexity transformers "
          f"{math.exp(a.mean()):.3f}, llama.cpp {math.exp(b.mean()):.3f}; seconds {seconds}")
    assert correlation >= 0.99
    assert math.exp(b.mean()) == pytest.approx(math.exp(a.mean()), rel=0.05)


def test_passkey_through_llama_cpp_answers_as_transformers_does(extended, yarn_folder):
    """Greedy decoding in llama.cpp (`llamacpp.greedy_tokens`) on the same passkey prompts as transformers'
    generate. The answers may differ where the first token is a near tie: at 1024 tokens, depth 0.2, llama.cpp
    ranks " the" 0.02 above " " and transformers " " 0.04 above " the" (llama.cpp's 8-bit activations on
    Q4_1 weights). So: the same prompts, agreement on at least one, accuracy within one trial, and greedy's
    first token is the argmax of llama.cpp's logits at the prompt's last position, read the token_losses way."""
    import numpy as np

    results = {}
    for name, model in (("llama.cpp", extended["yarn"]), ("transformers", yarn_folder)):
        started = time.perf_counter()
        results[name] = run_probe(model, lengths=[1024], passkey=True, depths="0.2,0.8", save=False,
                                  dtype="float32" if name == "transformers" else "auto", progress=False)
        print(f"\npasskey, {name}: {time.perf_counter() - started:.0f} s, {results[name]['passkey']['per_length']}")
    trials = {name: r["passkey"]["per_length"][0]["trials"] for name, r in results.items()}
    assert [(t["tokens"], t["key"]) for t in trials["llama.cpp"]] == [(t["tokens"], t["key"]) for t in trials["transformers"]]
    assert any(a["answer"] == b["answer"] for a, b in zip(trials["llama.cpp"], trials["transformers"]))
    correct = {name: sum(t["correct"] for t in rows) for name, rows in trials.items()}
    assert abs(correct["llama.cpp"] - correct["transformers"]) <= 1 and correct["llama.cpp"] >= 1

    from ropeconv.probe.passkey import build_prompt, passkey_for

    gguf = extended["yarn"]
    ids = build_prompt(llamacpp.GgufTokenizer(gguf), 1024, 0.2, passkey_for(1024, 0.2))
    loaded = llamacpp.load(gguf, 1100)
    with llamacpp._Decoder(loaded, len(ids), llamacpp.BATCH) as decoder:
        for start in range(0, len(ids), llamacpp.BATCH):
            every = decoder.decode(ids[start:start + llamacpp.BATCH], start, every_logit=True)
        expected = int(np.argmax(every[-1]))
    assert llamacpp.greedy_tokens(loaded, ids, 1) == [expected]
