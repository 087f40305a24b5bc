"""Matrix legs: a valid, stable leg name per job, and the jobs as matrix chunks.

Used when rendering (``matrix``, ``template``) and at run time (``amlwait matrix`` in the
``webhook-matrix`` generator job, ``amlwait submit``). Limits: leg names match
``^[A-Za-z][A-Za-z0-9_]{0,99}$`` and are unique ignoring case; at most 256 legs per matrix
(more jobs are split over several).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from amlwait.core.jobs import JobRef
from amlwait.core.wording import count
from amlwait.devops.pipelines.base import MAX_LEGS
from amlwait.devops.vso import set_variable
from amlwait.errors import InputError

LEG_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
MAX_LEG_NAME = 100
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def _leg_base(name: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not (text[:1].isascii() and text[:1].isalpha()):
        text = "job_" + text
    return text


def leg_names(jobs: Sequence[JobRef]) -> list[str]:
    """A valid matrix leg name per job, unique ignoring case, in the jobs' order.

    The job name with every ``-`` (or other character a leg name may not hold) turned
    into ``_``, ``job_`` in front when it does not start with a letter. A name longer
    than 100 characters, or one already taken (``a-b`` and ``a_b``; the same job name in
    two workspaces), is shortened and ends with ``_`` and 8 hex digits of a hash of the
    job's workspace and name, so it stays the same from one render to the next.
    """
    names: list[str] = []
    taken: set[str] = set()
    for job in jobs:
        base = _leg_base(job.name)
        candidate = base
        if len(base) > MAX_LEG_NAME or base.lower() in taken:
            digest = hashlib.sha256(f"{job.workspace}/{job.name}".encode()).hexdigest()
            attempt = 0
            while True:
                suffix = f"_{digest[:8]}" + (f"_{attempt}" if attempt else "")
                candidate = base[: MAX_LEG_NAME - len(suffix)] + suffix
                if candidate.lower() not in taken:
                    break
                attempt += 1
                if attempt > len(jobs):
                    break
        if not LEG_NAME_PATTERN.match(candidate) or candidate.lower() in taken:
            raise InputError(
                f"cannot derive a unique matrix leg name for job {job.name!r} "
                "(leg names are letters, digits and '_', at most 100, starting with a letter)"
            )
        taken.add(candidate.lower())
        names.append(candidate)
    return names


def check_max_legs(max_legs: int) -> None:
    """Refuse a matrix size outside 1 to 256 legs."""
    if not 1 <= max_legs <= MAX_LEGS:
        raise InputError(f"--max-legs {max_legs}: a matrix holds 1 to {MAX_LEGS} legs")


def matrix_chunks(
    jobs: Sequence[JobRef], *, max_legs: int = MAX_LEGS, with_subscription: bool = True
) -> list[dict[str, dict[str, str]]]:
    """The jobs as matrix legs ``{LEG: {"jobName", "subscription"?, "resourceGroup",
    "workspace"}}``, in chunks of at most ``max_legs`` legs, in the jobs' order."""
    check_max_legs(max_legs)
    legs: list[tuple[str, dict[str, str]]] = []
    for name, job in zip(leg_names(jobs), jobs, strict=True):
        leg = {"jobName": job.name}
        if with_subscription:
            leg["subscription"] = job.workspace.subscription
        leg["resourceGroup"] = job.workspace.resource_group
        leg["workspace"] = job.workspace.workspace
        legs.append((name, leg))
    return [dict(legs[start : start + max_legs]) for start in range(0, len(legs), max_legs)]


def matrix_variable_lines(
    jobs: Sequence[JobRef],
    *,
    variable: str = "legs",
    max_legs: int = MAX_LEGS,
    max_chunks: int | None = None,
) -> list[str]:
    """``##vso[task.setvariable]`` lines: ``VARIABLE_0`` … one compact JSON matrix per
    chunk of at most ``max_legs`` legs, then ``VARIABLE_count``; all output variables."""
    if not _VARIABLE_NAME.match(variable):
        raise InputError(
            f"--variable {variable!r}: use letters, digits and '_', starting with a letter"
        )
    chunks = matrix_chunks(jobs, max_legs=max_legs)
    if max_chunks is not None and len(chunks) > max_chunks:
        raise InputError(
            f"{count(len(jobs), 'job')} need {count(len(chunks), 'matrix')} of at most "
            f"{count(max_legs, 'leg')}, but the pipeline has only "
            f"{count(max_chunks, 'waiting job')}; render it again with "
            f"--max-chunks {len(chunks)} or more"
        )
    lines = [
        set_variable(f"{variable}_{index}", json.dumps(chunk, separators=(",", ":")))
        for index, chunk in enumerate(chunks)
    ]
    lines.append(set_variable(f"{variable}_count", str(len(chunks))))
    return lines
