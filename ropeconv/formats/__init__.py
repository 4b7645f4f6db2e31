"""Format adapters: each turns a format-free `RopePlan` into the writes of one file format.

- `ropeconv.formats.hf`: a Hugging Face folder (config.json in every shape the engines read,
  tokenizer_config.json's length cap, stored rotary buffers).
- `ropeconv.formats.gguf`: a GGUF file (llama.cpp's metadata keys and rope tensors).
"""
