"""Generated arithmetic text (the math domain): worksheets that are a pure function of a seed."""

from __future__ import annotations

import math
import random
from collections.abc import Callable


def _number(rng: random.Random, max_digits: int) -> int:
    return rng.randint(0, 10 ** rng.randint(1, max_digits) - 1)


def _add(rng: random.Random) -> str:
    a, b = _number(rng, 4), _number(rng, 4)
    return f"{a} + {b} = {a + b}"


def _sub(rng: random.Random) -> str:
    a, b = _number(rng, 4), _number(rng, 4)
    return f"{a} - {b} = {a - b}"


def _mul(rng: random.Random) -> str:
    a, b = _number(rng, 3), _number(rng, 2)
    return f"{a} * {b} = {a * b}"


def _div(rng: random.Random) -> str:
    b = rng.randint(1, 99)
    a = _number(rng, 4)
    q, r = divmod(a, b)
    return f"{a} / {b} = {q} remainder {r}"


def _square(rng: random.Random) -> str:
    a = rng.randint(0, 99)
    return f"{a}^2 = {a * a}"


def _paren(rng: random.Random) -> str:
    a, b, c = _number(rng, 2), _number(rng, 2), _number(rng, 1)
    return f"({a} + {b}) * {c} = {(a + b) * c}"


def _gcd(rng: random.Random) -> str:
    k = rng.randint(1, 12)
    a, b = k * rng.randint(1, 30), k * rng.randint(1, 30)
    return f"gcd({a}, {b}) = {math.gcd(a, b)}"


def _words(rng: random.Random) -> str:
    a, b = _number(rng, 2), _number(rng, 2)
    if rng.random() < 0.5:
        return f"What is {a} plus {b}? The answer is {a + b}."
    return f"What is {a} times {b}? The answer is {a * b}."


_KINDS: tuple[Callable[[random.Random], str], ...] = (
    _add,
    _sub,
    _mul,
    _div,
    _square,
    _paren,
    _gcd,
    _words,
)


def math_document(seed: int, index: int, *, lines: int = 24) -> str:
    """Worksheet `index` for `seed`: independent of every other worksheet."""
    rng = random.Random(f"tessera-math|{seed}|{index}")
    return "\n".join(rng.choice(_KINDS)(rng) for _ in range(lines)) + "\n"


def math_documents(seed: int, count: int, *, lines: int = 24) -> list[tuple[str, str]]:
    """(name, text) for `count` worksheets."""
    return [(f"math-{i:06d}", math_document(seed, i, lines=lines)) for i in range(count)]
