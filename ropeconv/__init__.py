"""ropeconv: give RoPE language models a longer context window, correctly, for every engine."""

__version__ = "0.2.0"
