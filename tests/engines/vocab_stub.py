"""Runs llama.cpp's convert_hf_to_gguf.py with one change: the model class's set_vocab writes a
minimal vocabulary (vocab_size plain tokens) instead of reading the tokenizer. Not RoPE: used only for
families whose set_vocab needs a sentencepiece tokenizer.model or a tokenizer it knows by hash
(tests/engines/llamacpp_families.py STUB_VOCAB). Usage: python vocab_stub.py CONVERTER_SCRIPT ARGS…
"""

import json
import runpy
import sys
from pathlib import Path


def minimal_vocab(self):
    n = self.hparams["vocab_size"]
    self.gguf_writer.add_tokenizer_model("gpt2")
    self.gguf_writer.add_tokenizer_pre("default")
    self.gguf_writer.add_token_list([f"<t{i}>" for i in range(n)])
    self.gguf_writer.add_token_types([1] * n)  # gguf.TokenType.NORMAL


script, args = Path(sys.argv[1]), sys.argv[2:]
sys.path[:0] = [str(script.parent), str(script.parent / "gguf-py")]
from conversion import get_model_class  # noqa: E402  (the converter's own registry)

arch = json.loads((Path(args[0]) / "config.json").read_text())["architectures"][0]
get_model_class(arch).set_vocab = minimal_vocab
sys.argv = [str(script)] + args
runpy.run_path(str(script), run_name="__main__")
