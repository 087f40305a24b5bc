import pytest

from amlwait.core.duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("2d", 172800),
        ("0.5s", 0.5),
        ("0", 0),
        (" 3M ", 180),
        (".25", 0.25),
    ],
)
def test_durations_users_type_are_understood(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "-5", "5x", "1h30m", "abc", "1e3"])
def test_a_bad_duration_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 90, 90s, 15m, 2h, 2d"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0.4s"), (42, "42s"), (842, "14m02s"), (11100, "3h05m"), (187200, "2d04h")],
)
def test_durations_print_compactly(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
