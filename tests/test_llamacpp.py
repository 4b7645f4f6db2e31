"""llama.cpp itself on extended GGUF files (needs llama-cpp-python; not in the default run).

    pip install llama-cpp-python        # builds llama.cpp from source (several minutes)
    pytest -m llamacpp tests/test_llamacpp.py -s

SmolLM2-135M was trained at 8192 tokens. On ~12k tokens of Python standard-library source, llama.cpp's
own perplexity past position 8192 is compared for the original file (run past its trained length,
unscaled) and for the files `extend_gguf` writes: the extended model must load with its new context
and keep its long-context perplexity close to its short-context one, where the original's rises.
"""

from __future__ import annotations

import ctypes
import math
import os
import sysconfig
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.llamacpp
llama_cpp = pytest.importorskip("llama_cpp")

from ropeconv import gguf_io  # noqa: E402
from ropeconv.smollm import TRAINED_CONTEXT, gguf_path  # noqa: E402

N_TOKENS = int(os.environ.get("ROPECONV_LLAMACPP_TOKENS", "12288"))
THREADS = int(os.environ.get("ROPECONV_LLAMACPP_THREADS", str(min(4, os.cpu_count() or 1))))
STDLIB_FILES = ("argparse.py", "typing.py", "inspect.py", "dataclasses.py", "pathlib.py", "subprocess.py")


def stdlib_text(min_chars: int = 200_000) -> str:
    lib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for name in STDLIB_FILES:
        path = lib / name
        if not path.is_file():
            path = lib / name.replace(".py", "") / "__init__.py"
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            parts.append(text)
            total += len(text)
        if total >= min_chars:
            break
    return "\n\n".join(parts)


def load(path: Path, n_ctx: int):
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=THREADS,
                           n_threads_batch=THREADS, logits_all=True, verbose=False)


def token_nll(llm, tokens: list[int], batch: int = 512) -> np.ndarray:
    """Negative log-likelihood of tokens[1:], each given all tokens before it, one decode per batch.

    Logits are read per batch and reduced at once (never n_ctx × vocabulary of them in memory)."""
    n_vocab = llm.n_vocab()
    ctx = llm._ctx.ctx
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    raw = llama_cpp.llama_batch_init(batch, 0, 1)
    out = []
    try:
        for start in range(0, len(tokens) - 1, batch):
            chunk = tokens[start:min(start + batch, len(tokens) - 1)]
            raw.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                raw.token[i] = tok
                raw.pos[i] = start + i
                raw.n_seq_id[i] = 1
                raw.seq_id[i][0] = 0
                raw.logits[i] = True
            if llama_cpp.llama_decode(ctx, raw) != 0:
                raise RuntimeError(f"llama_decode failed at position {start}")
            ptr = llama_cpp.llama_get_logits(ctx)
            logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                           shape=(len(chunk), n_vocab)).astype(np.float64)
            top = logits.max(axis=1, keepdims=True)
            logz = (top[:, 0] + np.log(np.exp(logits - top).sum(axis=1)))
            targets = np.asarray(tokens[start + 1:start + 1 + len(chunk)])
            out.append(logz - logits[np.arange(len(chunk)), targets])
    finally:
        llama_cpp.llama_batch_free(raw)
    return np.concatenate(out)


def perplexities(nll: np.ndarray, split: int = TRAINED_CONTEXT) -> dict:
    # nll[i] scores the token at position i + 1
    return {"short": math.exp(float(nll[:split - 1].mean())), "long": math.exp(float(nll[split - 1:].mean())),
            "tail_2k": math.exp(float(nll[-2048:].mean()))}


@pytest.fixture(scope="module")
def smol() -> Path:
    return gguf_path()


@pytest.fixture(scope="module")
def tokens(smol) -> list[int]:
    llm = llama_cpp.Llama(model_path=str(smol), n_ctx=512, vocab_only=True, verbose=False)
    toks = llm.tokenize(stdlib_text().encode("utf-8"), add_bos=False, special=False)
    if len(toks) < N_TOKENS:
        pytest.skip(f"only {len(toks)} tokens of text")
    return toks[:N_TOKENS]


@pytest.fixture(scope="module")
def original(smol, tokens) -> dict:
    llm = load(smol, N_TOKENS)
    result = perplexities(token_nll(llm, tokens))
    print(f"\noriginal (unscaled, trained 8192): {result}")
    return result


def test_yarn_x4_loads_with_32768_context_and_holds_perplexity(smol, tokens, original, tmp_path_factory):
    out = tmp_path_factory.mktemp("llamacpp") / "smol-yarn-x4.gguf"
    gguf_io.extend_gguf(smol, "yarn", factor=4, output=out)
    llm = load(out, 0)  # 0: llama.cpp's default, the file's context_length
    assert llm.n_ctx() == 32768
    assert llama_cpp.llama_model_n_ctx_train(llm.model) == 32768
    assert llama_cpp.llama_model_rope_freq_scale_train(llm.model) == pytest.approx(0.25)
    del llm
    llm = load(out, N_TOKENS)  # the same file; a context just long enough for the text is faster
    result = perplexities(token_nll(llm, tokens))
    print(f"yarn x4: {result}")
    assert result["long"] < original["long"]
    assert result["long"] < 1.25 * result["short"]  # past 8192 it stays close to its own short-context level


@pytest.mark.parametrize("method", ["llama3", "ntk"])
def test_other_methods_load_and_run_past_8192(smol, tokens, original, method, tmp_path_factory):
    out = tmp_path_factory.mktemp("llamacpp") / f"smol-{method}-x4.gguf"
    gguf_io.extend_gguf(smol, method, factor=4, output=out)
    llm = load(out, N_TOKENS)
    assert llama_cpp.llama_model_n_ctx_train(llm.model) == 32768
    result = perplexities(token_nll(llm, tokens))
    print(f"{method} x4: {result}")
    # training-free methods that keep the high frequencies: better than the unscaled model past 8192
    assert result["long"] < original["long"]
    assert result["tail_2k"] < original["tail_2k"]
