"""Write ropeconv.engines.RULES into README.md between its engine-rules markers (the table has one
definition: the rules; tests/test_engines.py fails when the README's copy is stale).

    python scripts/engine_rules_table.py            # rewrite the README's table
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ropeconv.engines import rules_markdown  # noqa: E402

START, END = "<!-- engine-rules:start -->", "<!-- engine-rules:end -->"


def main() -> int:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{rules_markdown()}\n{END}{tail}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
