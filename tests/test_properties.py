"""Property-based attacks (hypothesis): generated configs, safetensors headers, indexes, GGUF metadata,
CLI values and recipes — valid, borderline and hostile — each run through the real CLI in this process,
and the promise asserted on every one:

- the exit code is 0, 2 or 3 (never 4, never an uncaught exception);
- on failure stderr is exactly one `error: PROBLEM — FIX` line, with no traceback (no --debug);
- the source folder is byte-identical afterwards;
- on failure nothing exists under the destination name, and no temporary folder is left either way;
- nothing outside the model folder is read: some folders carry a link to a sentinel file outside, whose
  bytes must never appear in an output.

Profiles: "fast" (the default run; ROPECONV_PROPERTIES=fast) and "long" (`pytest -m properties_long`, or
ROPECONV_PROPERTIES=long). Counts of generated cases and held promises are printed at the end of the module
(run with -s to see them). Stubs: none.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from model_files import CONFIG, debris, snapshot, write_gguf_file, write_model
from ropeconv.cli import app

SENTINEL = b"SENTINEL-PROPERTY-3c9e: never read"
# derandomized in the default run (the same cases every time, no example database written to the tree)
FAST = dict(max_examples=40, deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = dict(max_examples=600, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = LONG if os.environ.get("ROPECONV_PROPERTIES") == "long" else FAST

COUNTS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    total = sum(v for k, v in COUNTS.items() if k.endswith(":cases"))
    print(f"\nproperty counts ({'long' if PROFILE is LONG else 'fast'} profile): {total} cases generated, "
          f"{COUNTS['promises_held']} promises held; " + ", ".join(f"{k}={v}" for k, v in sorted(COUNTS.items())))


# -- values: valid, borderline and hostile ------------------------------------------------------------------

HUGE = int("9" * 400)
scalars = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70), st.sampled_from([0, 1, 2, 4096, 2**32, 2**63, HUGE]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -1e308, 1e-308, 5e-324]),
    st.booleans(), st.none(), st.text(max_size=12),
    st.sampled_from(["32k", "1e30", "nan", "inf", "abc", "4", "", "a\nb", "\x00"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)
def mostly(valid, hostile, odds: int = 3):
    """`valid` about `odds` times in `odds + 1`, else `hostile`: enough valid cases reach the writer."""
    valid = valid if isinstance(valid, st.SearchStrategy) else st.just(valid)
    return st.integers(0, odds).flatmap(lambda i: hostile if i == 0 else valid)


rope_types = st.sampled_from(["default", "linear", "dynamic", "yarn", "llama3", "longrope", "su-magic", "", "mrope"])


@st.composite
def configs(draw):
    cfg = dict(CONFIG)
    for key in draw(st.lists(st.sampled_from(["rope_theta", "max_position_embeddings", "head_dim", "hidden_size",
                                               "num_attention_heads", "model_type", "partial_rotary_factor",
                                               "layer_types", "original_max_position_embeddings"]),
                             max_size=2, unique=True)):
        cfg[key] = draw(mostly(st.sampled_from([CONFIG.get(key, 4096), 8192, 500000.0]), json_values, 1))
    if draw(st.integers(0, 2)) == 0:
        scaling = {"rope_type": draw(st.one_of(rope_types, json_values))}
        for key in draw(st.lists(st.sampled_from(["factor", "original_max_position_embeddings", "beta_fast",
                                                   "low_freq_factor", "high_freq_factor"]), max_size=3, unique=True)):
            scaling[key] = draw(st.one_of(json_values, st.floats(0.5, 64)))
        cfg["rope_scaling"] = scaling
    return cfg


# -- running and the promise ----------------------------------------------------------------------------------

def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    return result.exit_code, result.stderr


def promise(kind: str, rc: int, err: str, src: Path, before: dict, dest: Path | None, work: Path,
            allowed=(0, 2, 3)) -> None:
    COUNTS[f"{kind}:cases"] += 1
    COUNTS[f"{kind}:exit{rc}"] += 1
    assert rc in allowed, (rc, err)
    if rc != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        if kind == "recipe":  # batch reports progress ("[1/2] name: …") before a conversion's error
            lines = [line for line in lines if not line.startswith("[")]
        if kind == "recipe" and len(lines) > 1:  # batch lists every recipe problem, one indented line each
            assert lines[0].startswith("error: ") and "problems in the recipes" in lines[0], err
            assert all(line.startswith("  ") and ".toml:" in line for line in lines[1:]), err
        elif kind == "recipe" and ".toml:" in lines[0] and " — " not in lines[0]:
            # recipe validation names the file:line and the problem, without a separate fix (batch's format)
            assert len(lines) == 1 and lines[0].startswith("error: "), err
            COUNTS["recipe:located-without-fix"] += 1
        else:
            assert len(lines) == 1 and lines[0].startswith("error: ") and " — " in lines[0], err
        assert "Traceback" not in err and "internal error" not in err, err
        if dest is not None:
            assert not dest.exists() and not dest.is_symlink(), dest
    assert snapshot(src) == before
    assert debris(work) == [] and (dest is None or not dest.parent.is_dir() or debris(dest.parent) == [])
    if dest is not None and dest.exists() and dest.is_dir():
        for path in dest.rglob("*"):
            if path.is_file():
                assert SENTINEL not in path.read_bytes(), path
    COUNTS["promises_held"] += 1


class Work:
    """A fresh folder per example (hypothesis runs many examples per test, so no tmp_path)."""

    def __enter__(self) -> Path:
        self.dir = Path(tempfile.mkdtemp(prefix="ropeconv-prop-"))
        (self.dir / "sentinel.txt").write_bytes(SENTINEL)
        return self.dir

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def add_sentinel_link(src: Path, work: Path, name: str) -> None:
    target = src / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    target.symlink_to(work / "sentinel.txt")


# -- the properties ----------------------------------------------------------------------------------------

@settings(**PROFILE)
@given(cfg=configs(), method=st.sampled_from(["yarn", "linear", "dynamic", "ntk", "llama3"]),
       factor=st.sampled_from(["4", "2", "1.5"]), rebase=st.booleans(),
       link=mostly(st.none(), st.sampled_from(["notes.txt", "tokenizer.json", "config.json", "sub/x.txt"])))
def test_configs(cfg, method, factor, rebase, link):
    with Work() as work:
        src = write_model(work / "models" / "m")
        (src / "config.json").write_text(json.dumps(cfg))
        if link:
            add_sentinel_link(src, work, link)
        before, dest = snapshot(src), work / "out"
        rc, err = run("extend", src, "-m", method, "-f", factor, "-o", dest, *(["--rebase"] if rebase else []))
        if link:
            assert rc != 0, "a link out of the model folder must be refused"
        promise("config", rc, err, src, before, dest, work)
        rc, err = run("inspect", src)
        promise("config-inspect", rc, err, src, before, None, work)


dtypes = st.sampled_from(["F32", "F16", "BF16", "F64", "I8", "U8", "BOOL", "Q4", "", "f32"])
dims = st.one_of(st.integers(-2, 70_000), st.sampled_from([2**31, 2**62, HUGE]), st.floats(0, 10), st.booleans())
names = st.one_of(st.sampled_from(["model.rotary_emb.inv_freq", "model.layers.0.self_attn.rotary_emb.cos_cached",
                                   "model.rotary_emb.sin_cached", "w", "__metadata__"]),
                  st.text(max_size=10))


@st.composite
def headers(draw):
    if draw(st.integers(0, 2)) == 0:  # a valid header, rotary buffers included, to reach the rewrite
        n = draw(st.integers(1, 40))
        header = {"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]},
                  "model.rotary_emb.inv_freq": {"dtype": draw(st.sampled_from(["F32", "F16", "BF16"])),
                                                "shape": [8], "data_offsets": [4 * n, 4 * n + 16]}}
        if header["model.rotary_emb.inv_freq"]["dtype"] == "F32":
            header["model.rotary_emb.inv_freq"]["data_offsets"][1] += 16
        return header, header["model.rotary_emb.inv_freq"]["data_offsets"][1]
    header, data_len = {}, draw(st.integers(0, 4096))
    for _ in range(draw(st.integers(0, 3))):
        entry = {}
        if draw(st.integers(0, 9)):
            entry["dtype"] = draw(mostly("F32", dtypes, 2))
        entry["shape"] = draw(mostly(st.lists(st.integers(0, 8), max_size=2), st.one_of(st.lists(dims, max_size=3),
                                                                                         json_values), 2))
        lo = draw(st.one_of(st.integers(-4, data_len + 8), st.floats(0, 64), st.sampled_from([HUGE])))
        hi = draw(st.one_of(st.integers(-4, data_len + 8), st.sampled_from([2**63, HUGE]), st.floats(0, 64)))
        if draw(st.integers(0, 9)):
            entry["data_offsets"] = [lo, hi]
        header[draw(names)] = draw(st.one_of(st.just(entry), json_values)) if draw(st.integers(0, 5)) == 0 else entry
    return header, data_len


@settings(**PROFILE)
@given(spec=headers(), buffers=st.sampled_from(["rewrite", "drop", "keep"]), copy=st.booleans())
def test_safetensors_headers(spec, buffers, copy):
    header, data_len = spec
    if header and all(isinstance(e, dict) for e in header.values()):  # make some of them consistent
        offset = 0
        for entry in header.values():
            if isinstance(entry.get("shape"), list) and all(isinstance(d, int) and 0 <= d < 64 for d in entry["shape"]) \
                    and entry.get("dtype") == "F32" and "data_offsets" in entry:
                size = math.prod(entry["shape"]) * 4
                entry["data_offsets"] = [offset, offset + size]
                offset += size
        data_len = max(data_len, offset)
    with Work() as work:
        src = write_model(work / "models" / "m")
        try:
            blob = json.dumps(header).encode()
        except (ValueError, OverflowError):
            return
        (src / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(range(256)) * (
            data_len // 256) + bytes(data_len % 256))
        before, dest = snapshot(src), work / "out"
        rc, err = run("extend", src, "-m", "yarn", "-f", "4", "-o", dest, "--buffers", buffers,
                      *(["--copy"] if copy else []))
        promise("header", rc, err, src, before, dest, work)


@st.composite
def weight_maps(draw):
    shard_names = st.one_of(st.sampled_from(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                             "missing.safetensors", "../outside.safetensors", "/etc/passwd",
                                             "sub/../model-00001-of-00002.safetensors", "a\x00b", "link.safetensors",
                                             ""]), json_values)
    return draw(st.one_of(st.dictionaries(st.text(max_size=8), shard_names, max_size=4), json_values))


@settings(**PROFILE)
@given(weight_map=weight_maps(), wrapper=st.booleans())
def test_indexes(weight_map, wrapper):
    with Work() as work:
        src = write_model(work / "models" / "m", shards=2)
        (work / "outside.safetensors").write_bytes((src / "model-00001-of-00002.safetensors").read_bytes())
        (src / "link.safetensors").symlink_to(work / "outside.safetensors")
        try:
            text = json.dumps({"weight_map": weight_map} if wrapper else weight_map)
        except (ValueError, OverflowError):
            return
        (src / "model.safetensors.index.json").write_text(text)
        before, dest = snapshot(src), work / "out"
        rc, err = run("extend", src, "-m", "yarn", "-f", "4", "-o", dest)
        assert rc != 0  # link.safetensors leads outside the folder: never a success
        promise("index", rc, err, src, before, dest, work)


cli_hostile = st.one_of(st.sampled_from(["4", "32k", "1e308", "1e300", "0", "-1", "nan", "inf", "1.0000001",
                                        "9" * 400, "abc", "", "4\nerror: forged", "\x1b[31m", "5000000000",
                                        "True", "0x10", "1_000", "１２"]),
                       st.text(max_size=12), st.integers(-10, 10**12).map(str),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr))
cli_values = mostly(st.sampled_from(["2", "4", "8", "16k", "32768", "1.5"]), cli_hostile, 2)
options = st.sampled_from(["--factor", "--target-context", "--original-context", "--beta-fast", "--beta-slow",
                           "--attention-factor", "--low-freq-factor", "-o", "--buffers"])


@settings(**PROFILE)
@given(pairs=st.lists(st.tuples(options, cli_values), min_size=1, max_size=3),
       method=mostly(st.sampled_from(["yarn", "linear", "ntk", "dynamic"]), st.sampled_from(["yarm", "", "llama3"])))
def test_cli_values(pairs, method):
    with Work() as work:
        src = write_model(work / "models" / "m")
        before = snapshot(src)
        args = ["extend", src, "-m", method]
        dest = None
        for option, value in pairs:
            if option == "-o":
                if not value or value.startswith("-") or "\x00" in value:
                    continue
                dest = work / "outs" / value.replace("/", "_").replace("..", "__")
                value = str(dest)
            args += [option, value]
        if dest is None:
            dest = work / "out"
            args += ["-o", dest]
        if "\x00" in "".join(map(str, args)):
            return  # the OS cannot pass a NUL inside an argument
        rc, err = run(*args)
        promise("cli", rc, err, src, before, dest if dest.name else None, work)


@st.composite
def gguf_metadata(draw):
    import gguf

    T = gguf.GGUFValueType
    number = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                       st.sampled_from([0.0, 1.0, 10000.0, 1e6, -1.0]))
    kv = {}
    if draw(st.integers(0, 6)):
        kv["llama.context_length"] = (T.UINT32, draw(mostly(4096, st.sampled_from([0, 1, 2**32 - 1, 8192]), 6)))
    kv["llama.rope.freq_base"] = (T.FLOAT32, draw(mostly(st.sampled_from([10000.0, 5e5]), number, 5)))
    head = draw(mostly(4, st.one_of(st.integers(0, 64), st.text(max_size=4)), 6))
    kv["llama.attention.head_count"] = (T.STRING, head) if isinstance(head, str) else (T.UINT32, head)
    kv["llama.embedding_length"] = (T.UINT32, draw(mostly(64, st.sampled_from([0, 63, 2**32 - 1]), 6)))
    kv["llama.rope.dimension_count"] = (T.UINT32, draw(mostly(16, st.sampled_from([0, 15, 2, 2**31]), 6)))
    if draw(st.integers(0, 3)) == 0:
        kv["llama.rope.scaling.type"] = (T.STRING, draw(st.sampled_from(["yarn", "linear", "none", "magic", ""])))
        kv["llama.rope.scaling.factor"] = (T.FLOAT32, draw(number))
    if draw(st.integers(0, 3)) == 0:
        kv["llama.rope.scaling.original_context_length"] = (T.UINT32, draw(st.sampled_from([0, 1, 4096, 2**32 - 1])))
    return kv


@settings(**PROFILE)
@given(kv=gguf_metadata(), method=st.sampled_from(["yarn", "linear", "ntk"]),
       original=mostly(st.sampled_from([None, "2048"]), st.sampled_from(["5000000000", "0", "nan", "1e30"])))
def test_gguf_metadata(kv, method, original):
    pytest.importorskip("gguf")

    with Work() as work:
        src = work / "m.gguf"
        write_gguf_file(src, "llama", kv)
        before, dest = src.read_bytes(), work / "out.gguf"
        extra = ["--original-context", original] if original else []
        rc, err = run("extend", src, "-m", method, "-f", "4", "-o", dest, *extra)
        COUNTS["gguf:cases"] += 1
        COUNTS[f"gguf:exit{rc}"] += 1
        assert rc in (0, 2), err
        if rc:
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
            assert not dest.exists()
        else:  # what was written must read back
            rc2, err2 = run("inspect", dest)
            assert rc2 == 0, err2
        assert src.read_bytes() == before
        assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []
        COUNTS["promises_held"] += 1


toml_hostile = st.one_of(st.sampled_from(["4", "1e308", "1e30", "0", "-2", "nan", "inf", '"32k"', '"abc"', "true",
                                         "[1, 2]", "{a = 1}", "9" * 400, '"a\\nb"', "4.0000001"]),
                        st.integers(-10, 10**12).map(str))
toml_values = mostly(st.sampled_from(["2", "4", '"16k"', "8192"]), toml_hostile, 2)


@settings(**PROFILE)
@given(values=st.dictionaries(st.sampled_from(["factor", "original_context", "target_context", "method", "name",
                                               "rebase", "buffers"]), toml_values, max_size=3))
def test_recipes(values):
    with Work() as work:
        src = write_model(work / "models" / "m")
        before = snapshot(src)
        fields = {"name": '"r1"', "source": json.dumps(str(src)), "method": '"yarn"', "factor": "2", **values}
        if "target_context" in values:
            fields.pop("factor", None) if "factor" not in values else None
        text = "[[conversion]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items())
        recipes = work / "recipes"
        recipes.mkdir()
        (recipes / "r.toml").write_text(text)
        out = work / "built"
        rc, err = run("batch", recipes, "--output-dir", out, "--state", work / "state.json")
        promise("recipe", rc, err, src, before, None, work)
        if rc != 0 and out.exists():
            assert all(debris(p) == [] for p in [out])


# -- hostile text (issue 19): values a model's files or a user's path carry, on screen --------------------------

# the three properties below take about 25 s together in the fast profile (40 examples each)
TEXT_PROFILE = PROFILE
PIECES = ["\n", "\r", "\x1b[31m", "\x1b]0;title\x07", "\x9b2J", "\u2028", "\x00", "\x7f", "%s", "%d", "%n", "%2F",
          "'", '"', "`", "$HOME", ";", "\\", "[bold]", "[/]", "[link=x]", "error: forged — fix", "\nerror: x — y",
          " ", "llama", "é", "\t"]
hostile_text = st.one_of(
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), min_size=1, max_size=6).map("".join),
    st.integers(300, 5000).map(lambda n: ("error: " + "x" * 40 + " ") * (n // 47)),  # very long, wrapping
)


def screen_promise(kind: str, rc: int, out: str, err: str, allowed=(0, 2, 3)) -> None:
    """No forged line: no ESC (or C1 CSI) byte, no line starting `error:` but the one real error."""
    COUNTS[f"{kind}:cases"] += 1
    COUNTS[f"{kind}:exit{rc}"] += 1
    assert rc in allowed, (rc, err)
    text = out + err
    assert "\x1b" not in text and "\x9b" not in text and "\u2028" not in text, text
    error_lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(error_lines) == (1 if rc not in (0, 1) else 0), text
    assert "Traceback" not in text and "internal error" not in text, text


def run_both(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    return result.exit_code, result.stdout, result.stderr


@settings(**TEXT_PROFILE)
@given(field=st.sampled_from(["model_type", "torch_dtype", "architectures", "rope_type", "_name_or_path"]),
       text=hostile_text)
def test_hostile_text_in_configs(field, text):
    """A hostile string in config.json, through inspect, check and extend."""
    with Work() as work:
        cfg = dict(CONFIG)
        if field == "rope_type":
            cfg["rope_scaling"] = {"rope_type": text, "factor": 4.0}
        else:
            cfg[field] = [text] if field == "architectures" else text
        src = write_model(work / "models" / "m", cfg)
        before, dest = snapshot(src), work / "out"
        for args, allowed in ((["inspect", src], (0, 2, 3)), (["check", src], (0, 1, 2, 3)),
                              (["extend", src, "-m", "yarn", "-f", "4", "-o", dest], (0, 2, 3))):
            rc, out, err = run_both(*args)
            screen_promise("text-config", rc, out, err, allowed)
        if rc != 0:
            assert not dest.exists()
        assert snapshot(src) == before
        COUNTS["promises_held"] += 1


@settings(**TEXT_PROFILE)
@given(key=st.sampled_from(["general.architecture", "llama.rope.scaling.type", "llama.rope.scaling.yarn_beta_fast",
                            "llama.rope.scaling.factor", "llama.context_length", "general.name"]),
       text=hostile_text, huge=st.booleans())
def test_hostile_text_in_gguf_keys(key, text, huge):
    """A hostile string (or a huge array of the wrong type) in a GGUF key, through inspect, check and extend."""
    gguf = pytest.importorskip("gguf")

    T = gguf.GGUFValueType
    with Work() as work:
        src = work / "m.gguf"
        arch = text if key == "general.architecture" and text else "llama"
        values = {"llama.context_length": (T.UINT32, 4096), "llama.embedding_length": (T.UINT32, 64),
                  "llama.attention.head_count": (T.UINT32, 4), "llama.rope.dimension_count": (T.UINT32, 16),
                  "llama.rope.freq_base": (T.FLOAT32, 10000.0), "llama.rope.scaling.type": (T.STRING, "yarn"),
                  "llama.rope.scaling.factor": (T.FLOAT32, 2.0),
                  "llama.rope.scaling.original_context_length": (T.UINT32, 2048)}
        if key != "general.architecture":
            values[key] = (T.ARRAY, [7] * 1000, T.INT32) if huge else (T.STRING, text)
        write_gguf_file(src, arch, {name.replace("llama.", f"{arch}.", 1): spec for name, spec in values.items()})
        before, dest = src.read_bytes(), work / "out.gguf"
        for args, allowed in ((["inspect", src], (0, 2)), (["check", src], (0, 1, 2)),
                              (["extend", src, "-m", "yarn", "-f", "4", "-o", dest], (0, 2))):
            rc, out, err = run_both(*args)
            screen_promise("text-gguf", rc, out, err, allowed)
        if rc != 0:
            assert not dest.exists()
        assert src.read_bytes() == before
        COUNTS["promises_held"] += 1


@settings(**TEXT_PROFILE)
@given(name=hostile_text.filter(lambda t: "\x00" not in t and "/" not in t and t not in (".", "..") and len(t) < 200),
       gguf_source=st.booleans())
def test_hostile_output_paths(name, gguf_source):
    """A hostile output name (the user's own -o): extend's output, its serve block and errors."""
    with Work() as work:
        if gguf_source:
            gguf = pytest.importorskip("gguf")

            src = work / "m.gguf"
            T = gguf.GGUFValueType
            write_gguf_file(src, "llama", {"llama.context_length": (T.UINT32, 4096),
                                           "llama.embedding_length": (T.UINT32, 64),
                                           "llama.attention.head_count": (T.UINT32, 4),
                                           "llama.rope.dimension_count": (T.UINT32, 16)})
            before = {"m.gguf": src.read_bytes()}
            dest = work / "outs" / (name + ".gguf")
        else:
            src = write_model(work / "models" / "m")
            before = snapshot(src)
            dest = work / "outs" / name
        rc, out, err = run_both("extend", src, "-m", "yarn", "-f", "4", "-o", dest)
        screen_promise("text-path", rc, out, err)
        if rc == 0:
            assert "serve it:" in out
        else:
            assert not dest.exists()
        assert (snapshot(src) if not gguf_source else {"m.gguf": src.read_bytes()}) == before
        COUNTS["promises_held"] += 1


@pytest.mark.properties_long
def test_long_profile_runs_every_property():
    """`pytest -m properties_long` runs every property above with the long profile (600 examples each)."""
    import subprocess
    import sys

    env = {**os.environ, "ROPECONV_PROPERTIES": "long"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", __file__,
                             "-m", "not properties_long"], env=env, capture_output=True, text=True)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
