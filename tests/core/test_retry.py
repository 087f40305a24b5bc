"""``Retry-After`` is obeyed, within a cap (issue 10, item 13)."""

from __future__ import annotations

import random

import pytest

from amlwait.core.retry import MAX_RETRY_AFTER, RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("7", 7.0),
        ("0.05", 0.05),
        ("100000", MAX_RETRY_AFTER),
        ("inf", MAX_RETRY_AFTER),
        ("-5", 0.0),
        ("nan", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_is_parsed_and_capped(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_the_delay_never_exceeds_the_cap_whatever_the_server_asks() -> None:
    policy = RetryPolicy(initial=1, maximum=60, jitter=0, rng=random.Random(1))
    assert policy.delay(2, float("inf")) == MAX_RETRY_AFTER
    assert policy.delay(2, 30) == 30
    assert policy.delay(9, None) == 60


def test_the_backoff_of_a_retry_late_in_a_long_wait_does_not_overflow() -> None:
    # Retrying until a 48-hour deadline at 60 s a try reaches attempt ~2,900.
    assert RetryPolicy(maximum=60, jitter=0).delay(3000) == 60
