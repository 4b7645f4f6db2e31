"""click's exceptions module as typer runs it (recent typer releases carry their own copy of click).

Its own module so that both the command group (`ropeconv.cli`) and the shared helpers
(`ropeconv.cli.common`) can use it without importing each other.
"""

from __future__ import annotations


def click_exceptions():
    """click's exceptions module, as typer runs it."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions
