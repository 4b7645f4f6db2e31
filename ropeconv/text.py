"""Untrusted text (from a model's files, the Hub, a path): which characters a terminal or a shell line
must never receive raw. One rule, used by the CLI's escaping (`ropeconv.cli.common.one_line`) and by the
shell quoting of printed commands (`ropeconv.launch.shell_quote`)."""

from __future__ import annotations

import unicodedata

# Cc: C0/C1 controls (newline, ESC, the 8-bit CSI U+009B, DEL); Zl/Zp: the Unicode line and paragraph
# separators, which split a line for many readers
CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def is_control(ch: str) -> bool:
    return unicodedata.category(ch) in CONTROL_CATEGORIES


def escaped_char(ch: str) -> str:
    """A control character as a Python-style escape (\\n, \\x1b, \\u2028)."""
    return ch.encode("unicode_escape").decode("ascii")


def one_line(text) -> str:
    """`text` on one line: newlines and other control characters (from a path, a value or a server
    message) shown escaped, so nothing a user or a file supplies can forge a second line."""
    return "".join(escaped_char(ch) if is_control(ch) else ch for ch in str(text))
