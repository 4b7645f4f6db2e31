"""Write the README's generated tables between their markers (each table has one definition; a test
fails when the README's copy is stale):

- ropeconv.engines.RULES between the engine-rules markers (tests/test_engines.py);
- every method's portability (ropeconv.portability.methods_markdown: the format adapters' method rows
  and the engines' facts) between the method-table markers (tests/test_methods.py), where the README has them.

    python scripts/engine_rules_table.py            # rewrite the README's tables
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ropeconv.engines import rules_markdown  # noqa: E402
from ropeconv.portability import methods_markdown  # noqa: E402

TABLES = [(("<!-- engine-rules:start -->", "<!-- engine-rules:end -->"), rules_markdown),
          (("<!-- method-table:start -->", "<!-- method-table:end -->"), methods_markdown)]


def main() -> int:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text(encoding="utf-8")
    for (start, end), table in TABLES:
        if start not in text:
            print(f"README.md has no {start} marker: table not written", file=sys.stderr)
            continue
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{table()}\n{end}{tail}"
    readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
