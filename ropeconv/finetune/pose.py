"""PoSE (Zhu et al. 2023, "PoSE: Efficient Context Window Extension of LLMs via Positional Skip-wise
Training"): train at the target length with short windows by giving them the position ids of a long one.

A window of `window` tokens is cut into `chunks` pieces of random lengths; piece i keeps its tokens
but its position ids are shifted by a skip u_i, with 0 = u_0 ≤ u_1 ≤ … ≤ u_{N-1} ≤ target − window,
so positions stay increasing and the last one can reach target − 1. Over many samples every
relative distance up to the target is seen, at the cost of a `window`-token forward pass.

Everything here is deterministic for (seed, sample index): sample i draws from its own generator,
so a resumed run, or another process of a DDP run, builds exactly the same sample i.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ropeconv.errors import RopeconvError

MIN_CHUNK = 1  # tokens a chunk keeps at least


@dataclass(frozen=True)
class PoseLayout:
    """How one sample's positions are laid out: `window` tokens reaching up to position `target` − 1."""

    window: int
    target: int
    chunks: int = 2
    skips: bool = True  # False: the control, positions 0 … window − 1 (plain short-window training)

    def check(self) -> None:
        if self.window > self.target:
            raise RopeconvError(f"--window {self.window} is longer than the target context {self.target}",
                                "pick a window at most the target (e.g. 2048), or a larger --target-context")
        if self.chunks < 1 or self.window < self.chunks * MIN_CHUNK + 1:
            raise RopeconvError(f"--window {self.window} is too short to split into {self.chunks} chunks",
                                f"give a window of at least {self.chunks * MIN_CHUNK + 1} tokens (e.g. 2048)")


def _generator(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])


def pose_positions(layout: PoseLayout, rng: np.random.Generator) -> np.ndarray:
    """The position ids (int64, increasing) of one sample."""
    positions = np.arange(layout.window, dtype=np.int64)
    if not layout.skips or layout.chunks == 1 and layout.window == layout.target:
        return positions
    # chunk boundaries: chunks − 1 distinct cut points, each chunk at least MIN_CHUNK long
    cuts = np.sort(rng.choice(np.arange(MIN_CHUNK, layout.window - MIN_CHUNK + 1), layout.chunks - 1, replace=False)) \
        if layout.chunks > 1 else np.array([], dtype=np.int64)
    room = layout.target - layout.window
    # skips: sorted uniform draws in [0, room]; with one chunk the whole window slides
    skips = np.sort(rng.integers(0, room + 1, size=max(layout.chunks - 1, 1)))
    if layout.chunks == 1:
        return positions + skips[0]
    for cut, skip in zip(cuts, skips):
        positions[cut:] += skip - (positions[cut] - cut)  # skips are cumulative offsets, not increments
    return positions


def sample(layout: PoseLayout, tokens: np.ndarray, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, position ids) of sample `index`: a `window`-token slice of the packed corpus at a
    random start, with PoSE positions."""
    rng = _generator(seed, index)
    start = int(rng.integers(0, len(tokens) - layout.window + 1))
    return tokens[start:start + layout.window], pose_positions(layout, rng)


class PoseDataset:
    """`length` PoSE samples of a packed token array, as the dicts a causal LM's forward takes."""

    def __init__(self, tokens: np.ndarray, layout: PoseLayout, seed: int, length: int):
        if len(tokens) < layout.window:
            raise RopeconvError(f"the training text has {len(tokens)} tokens, fewer than one --window "
                                f"of {layout.window}", "pass a longer --text or a smaller --window")
        self.tokens, self.layout, self.seed, self.length = tokens, layout, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        import torch

        ids, positions = sample(self.layout, self.tokens, self.seed, index)
        ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        return {"input_ids": ids_t, "labels": ids_t.clone(), "position_ids": torch.as_tensor(positions)}
