"""Passkey retrieval: a number hidden at a chosen depth of filler text, asked for at the end.

The standard prompt of the landmark-attention and YaRN evaluations: the filler sentences repeated to
the target length, one line "The pass key is K. Remember it. K is the pass key." at the depth,
and "What is the pass key? The pass key is" at the end; greedy decoding; the first integer in the
answer is compared with K. Keys come from a seeded generator, so runs repeat exactly.
"""

from __future__ import annotations

import random
import re
from typing import Callable

from ropeconv.probe.options import ProbeOptionError

INTRO = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
         "I will quiz you about the important information there.\n")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key.\n"
QUESTION = "What is the pass key? The pass key is"
DEFAULT_DEPTHS = (0.1, 0.5, 0.9)
ANSWER_TOKENS = 8
SEED = 20230831  # any fixed number: the keys only need to be the same run to run


def parse_depths(value: str | list | tuple | None) -> tuple[float, ...]:
    if value is None:
        return DEFAULT_DEPTHS
    items = value.split(",") if isinstance(value, str) else list(value)
    depths = []
    for item in items:
        try:
            depth = float(str(item).strip().rstrip("%")) / (100 if str(item).strip().endswith("%") else 1)
        except ValueError:
            depth = -1.0
        if not 0.0 <= depth <= 1.0:
            raise ProbeOptionError("depths", f"passkey depth {str(item).strip()!r} is not between 0 and 1",
                                   "use fractions like 0.1,0.5,0.9 (or percentages like 10%,50%)")
        depths.append(depth)
    if not depths:
        raise ProbeOptionError("depths", "no passkey depths given", "e.g. {name} 0.1,0.5,0.9")
    return tuple(sorted(set(depths)))


def passkey_for(length: int, depth: float) -> int:
    return random.Random(f"{SEED}:{length}:{depth:.4f}").randint(10000, 99999)


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])


def build_prompt(tokenizer, length: int, depth: float, key: int) -> list[int]:
    """Token ids of the passkey prompt, as close to `length` tokens as the filler's grain allows
    (never more)."""
    needle = NEEDLE.format(key=key)
    fixed = _count(tokenizer, INTRO + needle + QUESTION)
    unit = max(1, _count(tokenizer, FILLER * 8) // 8)
    repeats = max(0, (length - fixed) // unit)
    while True:
        before = round(repeats * depth)
        text = INTRO + FILLER * before + needle + FILLER * (repeats - before) + QUESTION
        ids = tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]
        if len(ids) <= length:
            return list(ids)
        if repeats == 0:
            raise ProbeOptionError("lengths", f"a passkey prompt needs more than {length} tokens",
                                   "probe longer {name} (at least a few hundred tokens)")
        repeats -= max(1, (len(ids) - length) // unit)


def first_integer(text: str) -> int | None:
    match = re.search(r"\d+", text)
    return int(match.group()) if match else None


def greedy_answer(model, tokenizer, ids: list[int]) -> str:
    import torch

    from ropeconv.probe.measure import model_device

    with torch.inference_mode():
        input_ids = torch.tensor([ids], dtype=torch.long, device=model_device(model))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=ANSWER_TOKENS,
                             do_sample=False, num_beams=1, pad_token_id=pad, temperature=None, top_p=None,
                             top_k=None)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def run_passkey(model, tokenizer, lengths: list[int], depths: tuple[float, ...] = DEFAULT_DEPTHS,
                advance: Callable[[int], None] | None = None,
                answer: Callable[[list[int]], str] | None = None) -> dict:
    """Accuracy per length and depth (one trial per pair). `answer(ids)`: the model's greedy continuation
    of a prompt as text (default: transformers' generate; the probe's llama.cpp backend passes its own)."""
    answer = answer or (lambda ids: greedy_answer(model, tokenizer, ids))
    per_length = []
    hits = trials = 0
    for length in lengths:
        rows = []
        for depth in depths:
            key = passkey_for(length, depth)
            ids = build_prompt(tokenizer, length, depth, key)
            said = answer(ids)
            correct = first_integer(said) == key
            rows.append({"depth": depth, "tokens": len(ids), "key": key, "answer": said.strip(), "correct": correct})
            hits += correct
            trials += 1
            if advance:
                advance(1)
        per_length.append({"length": length, "accuracy": sum(r["correct"] for r in rows) / len(rows), "trials": rows})
    return {"prompt": "landmark-attention / YaRN passkey prompt, greedy decoding, first integer of the answer",
            "depths": list(depths), "per_length": per_length, "accuracy": hits / trials if trials else None}
