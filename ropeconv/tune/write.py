"""Where a tune writes: one output folder, claimed before the search and put in place by ONE rename.

`Reservation.claim` runs before the model loads: it creates the output's missing parents (as extend
does), removes what killed runs left, and makes a locked temporary folder `.NAME.ropeconv-tmp-*`
beside the output. A second tune to the same output finds that live folder and is refused at once,
not after its whole search. At the end everything — the model files `extend` writes, tune.json and
tune.png — is written inside the temporary folder and moved into place by one rename; a run killed
at any moment leaves no partial output under the final name (its temporary folder is removed by the
next run to that output, once no process holds its lock).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ropeconv.errors import RopeconvError
from ropeconv.output import (TMP_MARK, hold, make_parents, make_temp_dir, move_into_place, remove_leftovers,
                             try_hold)


@dataclass
class Reservation:
    dest: Path
    staging: Path
    lock: int
    created_parents: list[Path] = field(default_factory=list)

    @property
    def inner(self) -> Path:
        """Where the complete output is assembled (moved to `dest` by the final rename)."""
        return self.staging / self.dest.name

    @classmethod
    def claim(cls, dest: Path) -> "Reservation":
        dest = dest.absolute()
        created = make_parents(dest.parent)
        remove_leftovers(dest)  # what killed runs left; a live run's folder is locked and kept
        staging = make_temp_dir(dest.parent, f".{dest.name}{TMP_MARK}")
        lock = hold(staging)
        reservation = cls(dest, staging, lock, created)
        if _live_runs(dest, staging):  # checked after our own claim: of two starting together, one sees the other
            reservation.release(remove_parents=True)
            raise RopeconvError(f"another ropeconv run is writing {dest} now",
                                "wait for it to finish, or choose another -o")
        return reservation

    def finish(self, write_files: Callable[[Path], None], force: bool) -> None:
        """Let `write_files(folder)` fill `inner`, then rename it into place (the one visible change)."""
        write_files(self.inner)
        move_into_place(self.inner, self.dest, force)

    def release(self, *, remove_parents: bool = False) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self.lock)
        if remove_parents:
            for folder in reversed(self.created_parents):  # made for this output, if still empty
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _live_runs(dest: Path, own: Path) -> list[Path]:
    """Temporary folders of `dest` that another live process holds locked."""
    live = []
    for entry in dest.parent.glob(f".{dest.name}{TMP_MARK}*"):
        if entry == own or entry.is_symlink() or not entry.is_dir():
            continue
        with try_hold(entry) as held:
            if held is False:
                live.append(entry)
    return live

