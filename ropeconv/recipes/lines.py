"""Where each key of a TOML file is written: tomllib gives no positions, so `key_lines()` scans the
source text and `line_of()` finds the line a problem should be reported at."""

from __future__ import annotations

import re

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_ARRAY_HEADER = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]")
_TABLE_HEADER = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_KEY_VALUE = re.compile(rf"^\s*({_DOTTED})\s*=")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_DOTTED})\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(_KEY, dotted)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def _value_state(text: str, depth: int, multiline: str | None) -> tuple[int, str | None]:
    """Scan a value's text: bracket depth and whether a multi-line string stays open at the end."""
    i, n = 0, len(text)
    while i < n:
        if multiline:
            end = text.find(multiline, i)
            if end < 0:
                return depth, multiline
            i, multiline = end + 3, None
            continue
        ch = text[i]
        if text.startswith('"""', i) or text.startswith("'''", i):
            multiline, i = text[i:i + 3], i + 3
        elif ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif ch == "'":
            end = text.find("'", i + 1)
            i = n if end < 0 else end + 1
        elif ch == "#":
            break
        else:
            depth += ch in "[{"
            depth -= ch in "]}"
            i += 1
    return max(depth, 0), multiline


def key_lines(text: str) -> dict[tuple, int]:
    """Where each key is written: {("conversion", 0, "probe", "lengths"): 12, ...}.

    Array-of-tables entries get their index; `[conversion.probe]` after the 2nd `[[conversion]]`
    maps to ("conversion", 1, "probe"). Keys inside inline tables get their line too. Lines inside
    multi-line strings and arrays are never mistaken for keys.
    """
    found: dict[tuple, int] = {}
    arrays: dict[tuple, int] = {}
    current: tuple = ()
    depth, multiline = 0, None

    def place(keys: tuple[str, ...]) -> tuple:
        out: list = []
        for key in keys:
            out.append(key)
            if tuple(out) in arrays:
                out.append(arrays[tuple(out)])
        return tuple(out)

    for number, line in enumerate(text.splitlines(), 1):
        if multiline or depth:
            depth, multiline = _value_state(line, depth, multiline)
            continue
        match = _ARRAY_HEADER.match(line)
        if match:
            path = place(_split_key(match.group(1))[:-1]) + (_split_key(match.group(1))[-1],)
            arrays[path] = arrays.get(path, -1) + 1
            current = path + (arrays[path],)
            found.setdefault(current, number)
            continue
        match = _TABLE_HEADER.match(line)
        if match:
            current = place(_split_key(match.group(1)))
            found.setdefault(current, number)
            continue
        match = _KEY_VALUE.match(line)
        if not match:
            continue
        path = current + _split_key(match.group(1))
        found.setdefault(path, number)
        rest = line[match.end():]
        if rest.lstrip().startswith("{"):
            for inner in _INLINE_KEY.finditer(rest):
                found.setdefault(path + _split_key(inner.group(1)), number)
        depth, multiline = _value_state(rest, 0, None)
    return found


def line_of(lines: dict[tuple, int], path: tuple) -> int:
    """The line of `path`, else of its nearest written parent, else 0."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return 0

