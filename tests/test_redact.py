"""Loopback decided by address, tokens refused or scrubbed before any output."""

from __future__ import annotations

import base64

import pytest

from amlwait.errors import InputError
from amlwait.redact import Redactor, check_token, is_loopback_host, is_loopback_url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765/", "http://127.9.9.9/", "http://[::1]:80/", "http://localhost/"]
)
def test_loopback_urls_are_recognised_by_address(url: str) -> None:
    assert is_loopback_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1.attacker.example/",
        "http://127.evil/",
        "http://localhost.attacker.example/",
        "http://0.0.0.0/",
        "http://10.0.0.1/",
        "http://[::ffff:8.8.8.8]/",
        "not a url",
        "http://[::1/",
    ],
)
def test_names_that_only_look_like_loopback_are_not(url: str) -> None:
    assert not is_loopback_url(url)


def test_loopback_host_accepts_brackets_and_a_trailing_dot() -> None:
    assert is_loopback_host("[::1]") and is_loopback_host("localhost.")
    assert not is_loopback_host("example.com")


@pytest.mark.parametrize("token", ["abc\ndef", "abc\rdef", "tab\there", "caf\u00e9", "  "])
def test_unsendable_tokens_are_refused_without_echoing_them(token: str) -> None:
    with pytest.raises(InputError) as caught:
        check_token(token, source="AMLWAIT_ACCESS_TOKEN")
    assert "AMLWAIT_ACCESS_TOKEN" in str(caught.value)
    if token.strip():
        assert token not in str(caught.value)


def test_a_plain_token_passes() -> None:
    assert check_token("eyJ0eXAi.abc-_", source="X") == "eyJ0eXAi.abc-_"


def test_scrub_masks_the_token_and_its_basic_auth_form() -> None:
    redactor = Redactor()
    redactor.register("s3cr3t-token")
    basic = base64.b64encode(b":s3cr3t-token").decode()
    text = redactor.scrub(f"401: Authorization: Bearer s3cr3t-token / Basic {basic}")
    assert "s3cr3t-token" not in text and basic not in text
    assert text.count("***") == 2


def test_scrub_is_bounded_and_forgets() -> None:
    redactor = Redactor(capacity=4)
    for n in range(10):
        redactor.register(f"token-number-{n}")
    assert len(redactor) <= 4
    redactor.register("keep-this-one")
    redactor.forget("keep-this-one")
    assert redactor.scrub("keep-this-one") == "keep-this-one"


def test_short_strings_are_not_treated_as_secrets() -> None:
    redactor = Redactor()
    redactor.register("ab")
    assert redactor.scrub("about ab") == "about ab"
    assert redactor.scrub("x extra-secret y", "extra-secret") == "x *** y"
