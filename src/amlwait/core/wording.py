"""Counts in words: ``1 job``, ``2 jobs``, ``1 matrix``, ``3 matrices``.

Every message that prints a count goes through :func:`count`, so no output says
"1 requests". English only; irregular plurals are in :data:`IRREGULAR` or passed in.
"""

from __future__ import annotations

IRREGULAR = {"matrix": "matrices", "was": "were", "is": "are", "has": "have"}


def plural(noun: str, number: int, plural_form: str | None = None) -> str:
    """``noun`` when ``number`` is 1 (or -1), else its plural: ``plural_form`` if given,
    else :data:`IRREGULAR`'s, else ``noun + "s"``."""
    if abs(number) == 1:
        return noun
    return plural_form or IRREGULAR.get(noun) or noun + "s"


def count(number: int, noun: str, plural_form: str | None = None) -> str:
    """``f"{number} {noun}"`` with the noun agreeing: ``count(1, "job") == "1 job"``."""
    return f"{number} {plural(noun, number, plural_form)}"
