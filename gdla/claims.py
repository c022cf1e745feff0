"""Hold a chapter's sentences to the numbers its build computes.

A sentence that interprets a result either takes its words from the result
(``faster``/``slower``, ``all five``/``three of the five``, a count, a ranking)
or is followed by a check that fails the build when the result contradicts it.
Every chapter of the book does both through this module:

* :func:`record` glues several values at once (out of sight, in a hidden cell);
* :func:`comparative`, :func:`count_phrase`, :func:`times_phrase` and
  :func:`number_word` turn results into the words that depend on them;
* :class:`Claims` checks a claim and raises :class:`ClaimError`, naming the
  chapter, the claim and the evidence, when the numbers contradict it.

Examples
--------
>>> from gdla.claims import ClaimError, Claims, comparative, count_phrase
>>> claims = Claims("example")
>>> claims.check(3 < 5, "three iterations are fewer than five", cg=3, cgls=5)
>>> count_phrase(3, 5), count_phrase(5, 5), count_phrase(0, 2)
('three of the five', 'all five', 'neither of the two')
>>> comparative(0.2, 0.5)
'faster'
>>> try:
...     claims.check(5 < 3, "five is fewer", cg=5)
... except ClaimError as error:
...     print(error)
[example] the text says "five is fewer", but this build found cg=5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "ClaimError",
    "Claims",
    "comparative",
    "count_phrase",
    "number_word",
    "plural",
    "record",
    "times_phrase",
]

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


class ClaimError(AssertionError):
    """A sentence of the book is contradicted by the numbers its build computed."""

    def __init__(self, chapter: str, claim: str, evidence: dict[str, Any]) -> None:
        self.chapter = chapter
        self.claim = claim
        self.evidence = evidence
        shown = ", ".join(f"{name}={_show(value)}" for name, value in evidence.items())
        found = f", but this build found {shown}" if shown else ", but this build contradicts it"
        super().__init__(f'[{chapter}] the text says "{claim}"{found}')


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.3g}" for v in value) + "]"
    return str(value)


class Claims:
    """The checked claims of one chapter.

    Parameters
    ----------
    chapter : str
        The chapter's name, printed in every failure so the build log says
        where the false sentence is.

    Attributes
    ----------
    checked : list of str
        The claims checked so far, in order (a chapter may list them).
    """

    def __init__(self, chapter: str) -> None:
        self.chapter = chapter
        self.checked: list[str] = []

    def check(self, holds: object, claim: str, **evidence: Any) -> None:
        """Fail the build unless ``holds`` is true.

        Parameters
        ----------
        holds : object
            The result of testing the claim against this build's numbers (its
            truth value decides).
        claim : str
            The sentence (or its gist) as the reader sees it.
        **evidence
            The numbers the claim was tested on; printed when it fails.

        Raises
        ------
        ClaimError
            When ``holds`` is false.
        """
        self.checked.append(claim)
        if not bool(holds):
            raise ClaimError(self.chapter, claim, evidence)

    def close(self, value: float, target: float, claim: str, *, rtol: float) -> None:
        """Check that ``value`` is within ``rtol`` (relative) of ``target``."""
        holds = math.isfinite(value) and abs(value - target) <= rtol * abs(target)
        self.check(holds, claim, value=value, target=target, rtol=rtol)

    def all(self, values: Sequence[Any], test: Callable[[Any], object], claim: str) -> None:
        """Check that ``test`` holds for every one of ``values``."""
        failing = [value for value in values if not test(value)]
        self.check(not failing, claim, failing=failing)


def number_word(n: int) -> str:
    """``n`` in words up to ten, in digits beyond (``3`` -> ``'three'``)."""
    n = int(n)
    return _WORDS[n] if 0 <= n < len(_WORDS) else f"{n:,}"


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``n`` and ``noun``, in the plural unless ``n`` is one: ``'1 thread'``, ``'2 threads'``."""
    n = int(n)
    word = noun if n == 1 else (plural_form or noun + "s")
    return f"{n:,} {word}"


def count_phrase(k: int, n: int) -> str:
    """How many of ``n`` things: ``'all five'``, ``'none of the five'``, ``'three of the five'``.

    Two things read ``'both'`` and ``'neither of the two'``.
    """
    k, n = int(k), int(n)
    if not 0 <= k <= n:
        raise ValueError(f"count_phrase: expected 0 <= k <= n, found k={k}, n={n}")
    total = number_word(n)
    if n == 2 and k == 2:
        return "both"
    if k == n:
        return f"all {total}"
    if k == 0:
        return "neither of the two" if n == 2 else f"none of the {total}"
    return f"{number_word(k)} of the {total}"


def comparative(
    value: float, reference: float, *, less: str = "faster", more: str = "slower"
) -> str:
    """``less`` when ``value < reference``, ``more`` otherwise (times: smaller is faster)."""
    return less if value < reference else more


def times_phrase(
    value: float, reference: float, *, less: str = "faster", more: str = "slower"
) -> str:
    """``value`` against ``reference`` in words: ``'2.50 times faster'``, ``'1.30 times slower'``.

    The ratio is always at least one, printed with two decimals below ten (so a
    ratio of 1.48 never reads "1 times") and as a whole number above.
    """
    if value <= 0 or reference <= 0:
        raise ValueError("times_phrase: expected positive values")
    ratio = max(value, reference) / min(value, reference)
    word = less if value < reference else more
    return f"{ratio:.2f} times {word}" if ratio < 10 else f"{ratio:,.0f} times {word}"


def record(**values: Any) -> None:
    """Glue every keyword as a hidden value of this page (``myst_nb.glue(name, value)``)."""
    from myst_nb import glue  # imported on use: gdla itself does not need myst-nb

    for name, value in values.items():
        glue(name, value, display=False)
