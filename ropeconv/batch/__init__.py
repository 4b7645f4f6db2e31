"""`ropeconv batch`: build, probe and push every conversion the recipes describe — and nothing that
has not changed.

A conversion is skipped when its inputs are the same as at its last successful build: the source
revision, the recipe (its normalised hash) and the ropeconv version. With a push target (and no
`create_pr`) the pushed repo's ropeconv.json records the last build (a `batch` section this runner
adds before pushing), so CI needs no state of its own; otherwise a state file
(`.ropeconv-state.json` beside the recipes, or `--state`), updated atomically after each success,
together with the output folder's own ropeconv.json.

What lives where:

- `state`:  the inputs of a build (`Inputs`, `SourceRevision` fingerprints), the stamp in
            ropeconv.json (`Stamp`), the pushed record (`pushed_build`), the state file (`StateFile`).
- `decide`: `decide(Facts) -> Decision`: skip, build, or (a dry run) check — and the words for it.
- `run`:    `run_batch` (the run loop and the dry run), `list_conversions`, reports; terminal output
            goes to a `Reporter` the caller passes.
"""

from ropeconv.batch.decide import BUILD, CHECK, SKIP, Decision, Facts, decide
from ropeconv.batch.run import (BUILT, DEFAULT_OUTPUT_DIR, ERROR, FAILED, NOT_RUN, SKIPPED, WOULD_BUILD, WOULD_CHECK,
                                WOULD_SKIP, Outcome, Reporter, check_environment, error_document, list_conversions,
                                run_batch, write_report)
from ropeconv.batch.state import (STAMP_KEY, STATE_FORMAT, STATE_NAME, Inputs, PushedBuild, SourceRevision, Stamp,
                                  StateEntry, StateFile, current_version, default_state_path, local_fingerprint,
                                  pushed_build, smollm2_fingerprint, source_revision)

__all__ = [
    "BUILD", "CHECK", "SKIP", "Decision", "Facts", "decide",
    "BUILT", "DEFAULT_OUTPUT_DIR", "ERROR", "FAILED", "NOT_RUN", "SKIPPED", "WOULD_BUILD", "WOULD_CHECK", "WOULD_SKIP",
    "Outcome", "Reporter", "check_environment", "error_document", "list_conversions", "run_batch", "write_report",
    "STAMP_KEY", "STATE_FORMAT", "STATE_NAME", "Inputs", "PushedBuild", "SourceRevision", "Stamp", "StateEntry",
    "StateFile", "current_version", "default_state_path", "local_fingerprint", "pushed_build",
    "smollm2_fingerprint", "source_revision",
]
