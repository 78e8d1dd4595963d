"""Fuzzing the `.arch` front end (issue 15): mutations of every example file must each compile or
raise an `ArchError` located at a line of the file, never any other exception.

The mutations are seeded (the same cases every run) and mix what a typing slip, a careless edit
and an adversary would do: deleted, inserted and duplicated characters and lines, swapped
lines, truncations, numbers replaced by extreme ones, words replaced by other words of the
language, and odd characters (line separators, a byte-order mark, NUL, quotes, braces). The
whole run is bounded in time.
"""
from __future__ import annotations

import random
import re
import time

import pytest

import ntkc
from ntkc.errors import ArchError

from support.paths import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.arch"))
MUTANTS_PER_FILE = 60
BUDGET_SECONDS = 45.0

WORDS = ["input", "conv", "relu", "erf", "gelu", "abrelu", "leaky_relu", "identity", "avgpool", "lap", "gap",
         "flatten", "dense", "flip", "repeat", "residual", "scale", "use", "sqrt", "size", "stride", "dilation", "padding", "w_std",
         "b_std", "trainable", "height", "width", "channels", "same", "valid", "circular", "true", "false",
         "a", "b", "slope", "sine", "freq", "nonesuch"]
NUMBERS = ["0", "-1", "1", "2", "3000", "2147483648", "1e308", "1e-320", "-0.0", "9" * 60, "9" * 5000,
           "0.5", "1e400", "sqrt(2)", "sqrt(-1)", "sqrt(" + "9" * 400 + ")", "007", "+3", "1_000"]
CHARS = list("{}=()#\"\n\t -.e_") + ["\u2028", "\u0085", "\ufeff", "\x00", "\r", "\x0c", "é", "\U0001f600"]


def _mutate(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    kind = rng.randrange(9)
    if kind == 0 and text:  # delete a span
        i = rng.randrange(len(text))
        return text[:i] + text[i + rng.randint(1, 12):]
    if kind == 1:  # insert odd characters
        i = rng.randrange(len(text) + 1)
        return text[:i] + "".join(rng.choice(CHARS) for _ in range(rng.randint(1, 3))) + text[i:]
    if kind == 2:  # duplicate a line, possibly many times
        i = rng.randrange(len(lines))
        return "\n".join(lines[:i] + [lines[i]] * rng.choice([2, 3, 50]) + lines[i:])
    if kind == 3 and len(lines) > 1:  # swap two lines
        i, j = rng.sample(range(len(lines)), 2)
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    if kind == 4:  # truncate
        return text[:rng.randrange(len(text) + 1)]
    if kind == 5:  # a number replaced by an extreme one
        spots = [m.span() for m in re.finditer(r"-?\d+(\.\d+)?(e-?\d+)?|sqrt\(\d+\)", text)]
        if spots:
            a, b = rng.choice(spots)
            return text[:a] + rng.choice(NUMBERS) + text[b:]
    if kind == 6:  # a word replaced by another word of the language
        spots = [m.span() for m in re.finditer(r"[A-Za-z_]+", text)]
        if spots:
            a, b = rng.choice(spots)
            return text[:a] + rng.choice(WORDS) + text[b:]
    if kind == 7:  # a parameter added to a line
        i = rng.randrange(len(lines))
        lines[i] += f" {rng.choice(WORDS)}={rng.choice(NUMBERS + WORDS)}"
        return "\n".join(lines)
    # nest the body in repeat or residual blocks, or leave a brace open
    i = rng.randrange(len(lines))
    depth = rng.choice([1, 3, 60, 200])
    opener = rng.choice([f"repeat {rng.choice(['1', '2', '0', '99999'])} {{", "residual {", "residual scale=0.5 {"])
    return "\n".join(lines[:i] + [opener] * depth + lines[i:]
                     + ["}"] * rng.choice([0, depth, depth + 1]))


def test_mutated_examples_compile_or_give_located_errors():
    rng = random.Random(20261215)
    start = time.perf_counter()
    outcomes = {"compiled": 0, "located error": 0}
    for path in EXAMPLES:
        text = path.read_text()
        for n in range(MUTANTS_PER_FILE):
            src = _mutate(text, rng)
            if rng.random() < 0.3:
                src = _mutate(src, rng)  # two mutations at once
            try:
                k = ntkc.compile(src.encode(), str(path))  # bytes: always the text (a str could name a file)
                k.describe()
                outcomes["compiled"] += 1
            except ArchError as err:
                assert err.span is not None and err.span.line >= 1, f"unlocated error for mutant of {path.name}:\n{err}"
                assert str(err).startswith(f"{path}:{err.span.line}:{err.span.column}: ")
                outcomes["located error"] += 1
            except Exception as err:  # noqa: BLE001
                pytest.fail(f"mutant {n} of {path.name} raised {type(err).__name__}: {err}\n--- source ---\n"
                            f"{src[:3000]!r}")
            assert time.perf_counter() - start < BUDGET_SECONDS, f"fuzzing exceeded {BUDGET_SECONDS} s at {path.name}"
    total = len(EXAMPLES) * MUTANTS_PER_FILE
    assert sum(outcomes.values()) == total
    assert outcomes["compiled"] > total // 20 and outcomes["located error"] > total // 3, outcomes
