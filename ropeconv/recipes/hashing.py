"""The recipe hash: what decides whether a conversion's last build is still current."""

from __future__ import annotations

import hashlib
import json

from ropeconv.recipes.model import ProbeSettings

def _probe_fingerprint(probe: ProbeSettings | None) -> dict | None:
    """The probe settings as they enter the recipe hash (a text file by its content, not its path)."""
    if probe is None:
        return None
    out = probe.to_dict()
    if probe.text is not None:
        try:
            out["text"] = "sha256:" + hashlib.sha256(probe.text.read_bytes()).hexdigest()
        except OSError:
            out["text"] = str(probe.text)
    return out


def recipe_hash(normalised: dict) -> str:
    """sha256 of the normalised conversion: key order, formatting, comments, int-vs-float and whether a
    value came from [defaults] do not change it; any value that changes the build does."""
    text = json.dumps(normalised, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
