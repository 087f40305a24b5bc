"""Names of re-run attempts: ``NAME``, then ``NAME_r2``, ``NAME_r3``…

Azure ML job names are unique per workspace, so a re-run of the same circuit and date
needs a new name. The first attempt keeps the plain name; attempt ``k`` (k ≥ 2) is
``NAME_r{k}``. Both ``amlwait submit --retry-failed`` and ``amlwait wait --retries``
use this rule, so either can pick up where the other left off.
"""

from __future__ import annotations

import re

from amlwait.core.jobs import JOB_NAME_PATTERN

_ATTEMPT = re.compile(r"^(?P<base>.+)_r(?P<attempt>[2-9]|[1-9]\d+)$")


def attempt_name(base: str, attempt: int) -> str:
    """The job name of ``attempt`` (1 is ``base`` itself)."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    name = base if attempt == 1 else f"{base}_r{attempt}"
    if not JOB_NAME_PATTERN.match(name):
        raise ValueError(f"{name!r} would not be a valid Azure ML job name")
    return name


def split_attempt(name: str) -> tuple[str, int]:
    """``("NAME", k)`` for ``NAME_r{k}``, ``(name, 1)`` for a first attempt."""
    match = _ATTEMPT.match(name)
    if match is None:
        return name, 1
    return match.group("base"), int(match.group("attempt"))
