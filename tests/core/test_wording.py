from __future__ import annotations

import pytest

from amlwait.core.wording import count, plural


@pytest.mark.parametrize(
    ("number", "noun", "expected"),
    [
        (0, "job", "0 jobs"),
        (1, "job", "1 job"),
        (2, "job", "2 jobs"),
        (1, "request", "1 request"),
        (1, "matrix", "1 matrix"),
        (3, "matrix", "3 matrices"),
        (1, "workspace", "1 workspace"),
    ],
)
def test_a_count_agrees_with_its_noun(number: int, noun: str, expected: str) -> None:
    assert count(number, noun) == expected


def test_an_irregular_plural_can_be_given() -> None:
    assert plural("child", 2, "children") == "children"
    assert plural("child", 1, "children") == "child"
