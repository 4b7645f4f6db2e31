"""The probe's typed error: an option of the probe that is wrong, or does not fit the model or text.

It carries which option (`field`: a `run_probe` parameter — lengths, device, dtype, text, dataset,
depths, max_short_ratio, …) and leaves the spelling to the front end, as `RequestError` does for
`extend`'s fields: `--lengths` on the command line (the CLI's `run`), `probe.lengths` in a
recipe (`ropeconv.recipes.recipe_words`), the parameter name for library callers.
"""

from __future__ import annotations

from ropeconv.request import RequestError


class ProbeOptionError(RequestError):
    """A probe option that is wrong. `{name}` in its text stands for the option as the front end spells
    it, `{name:other}` for another probe option."""
