"""A wait's result as JUnit XML, for Azure DevOps' PublishTestResults@2 (format JUnit).

Shape::

    <testsuites name="amlwait" tests failures errors skipped time timestamp>
      <testsuite name=WORKSPACE tests failures errors skipped time timestamp>   one per workspace
        <testcase classname=WORKSPACE name=JOB time=RUN_TIME>                    one per job
          <properties><property name="studio_url" value=LINK/>…</properties>
          <failure message=REASON type=STATUS>status, reason, Studio link</failure>  ended badly
          <error message=REASON type=STATUS>…</error>                          unfinished at the end
          <system-out>Studio: LINK</system-out>
        </testcase>

Semantics:

- A job that Completed passes; Failed, Canceled, not found (or NotResponding/Paused past
  its grace) is a ``<failure>`` whose ``type`` is the last status seen (``NotFound`` when
  never seen); a job still going when the wait ended is an ``<error>``. A Failed attempt
  that ``--retries`` replaced by a newer one is ``<skipped>`` (its message names the retry).
- A case's ``time`` is :func:`amlwait.result.run_time` in seconds: how long the job ran by
  Azure ML's start and end times, or — when those could not be read — amlwait's own measure
  (from the job's creation, or from when the waiter first saw it, to when the waiter saw it
  end; the failure text says which); ``0`` when unknown (never seen, or not ended).
- A ``<failure>``'s ``message`` is the job's reason (``UserError: …`` with Azure
  ML's error code, as written, at most 1,000 characters keeping the end); its text lists status,
  outcome, the times (ran, queued, total; started and ended in UTC), the full reason and
  the Studio link.
- Suites are grouped by workspace and named by the workspace name (``RG/WS``, then the full
  ``SUB/RG/WS``, only when two workspaces of the wait share a name). Jobs keep the order of
  the result.
- A suite's ``timestamp`` is the earliest known start of its jobs (else the wait's start),
  in UTC without a zone (as the JUnit schema wants); its ``time`` is the wall-clock span from
  there to the last end (a job's ``finished_at``, else the wait's end). Jobs run in parallel,
  so a span — never less than any case's ``time`` — says how long the batch took, where a
  sum of case times would not. ``<testsuites>`` carries the totals and the span of all.
- Text is escaped by ElementTree; characters XML 1.0 forbids (C0 controls other than tab,
  CR and LF, surrogates, U+FFFE/U+FFFF) are dropped.

The returned text starts with an XML declaration for UTF-8: write it with
``encoding="utf-8"``.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from amlwait.core.duration import format_duration
from amlwait.core.jobs import WorkspaceRef
from amlwait.core.status import Outcome
from amlwait.core.tracker import JobState
from amlwait.result import (
    RAN,
    WaitResult,
    format_run_time,
    queued_seconds,
    reason_text,
    run_time,
    run_time_label,
    seen_seconds,
    total_seconds,
)

MESSAGE_WIDTH = 1000

# Everything outside XML 1.0's Char production.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry (escaping is ElementTree's)."""
    return _NOT_XML_CHAR.sub("", text)


def render_junit(result: WaitResult) -> str:
    """The JUnit XML document of ``result`` (see the module docstring)."""
    root = ET.Element("testsuites", name="amlwait")
    suites = _suites(result)
    for suite in suites:
        root.append(suite.element(result))
    _set_totals(root, suites, result)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


@dataclass
class _Suite:
    name: str
    jobs: list[JobState]

    @property
    def failures(self) -> int:
        return sum(1 for job in self.jobs if _is_failure(job))

    @property
    def errors(self) -> int:
        return sum(1 for job in self.jobs if _is_error(job))

    @property
    def skipped(self) -> int:
        return sum(1 for job in self.jobs if job.outcome is Outcome.RETRIED)

    def element(self, result: WaitResult) -> ET.Element:
        start, end = _span(self.jobs, result)
        suite = ET.Element("testsuite", name=xml_text(self.name))
        _set_counts(suite, len(self.jobs), self.failures, self.errors, self.skipped, start, end)
        for job in self.jobs:
            suite.append(_case(job, classname=self.name))
        return suite


def _suites(result: WaitResult) -> list[_Suite]:
    by_workspace: dict[WorkspaceRef, list[JobState]] = {}
    for job in result.jobs:
        by_workspace.setdefault(job.ref.workspace, []).append(job)
    refs = list(by_workspace)
    return [_Suite(_suite_name(ref, refs), by_workspace[ref]) for ref in refs]


def _suite_name(ref: WorkspaceRef, all_refs: Sequence[WorkspaceRef]) -> str:
    if sum(1 for other in all_refs if other.workspace == ref.workspace) == 1:
        return ref.workspace
    same_group = [
        o
        for o in all_refs
        if (o.resource_group, o.workspace) == (ref.resource_group, ref.workspace)
    ]
    if len(same_group) == 1:
        return f"{ref.resource_group}/{ref.workspace}"
    return str(ref)


def _case(job: JobState, *, classname: str) -> ET.Element:
    took = run_time(job)
    case = ET.Element(
        "testcase",
        classname=xml_text(classname),
        name=xml_text(job.name),
        time=_seconds(took or 0.0),
    )
    status = job.status or "NotFound"
    properties = ET.SubElement(case, "properties")
    for name, value in (("studio_url", job.link), ("status", status)):
        ET.SubElement(properties, "property", name=name, value=xml_text(value))
    if _is_failure(job) or _is_error(job):
        tag = "failure" if _is_failure(job) else "error"
        outcome = job.outcome.value if job.outcome else Outcome.UNFINISHED.value
        message = reason_text(job, MESSAGE_WIDTH, one_line=False) or f"{job.name} ended {status}"
        body = [f"status: {status}", f"outcome: {outcome}", *_time_lines(job)]
        if job.error_code:
            body.append(f"error code: {job.error_code}")
        if job.reason:
            body.append(f"reason: {job.reason}")
        body.append(f"Studio: {job.link}")
        problem = ET.SubElement(case, tag, message=xml_text(message), type=xml_text(status))
        problem.text = xml_text("\n".join(body))
    if job.outcome is Outcome.RETRIED:
        # The attempt failed, but a newer attempt took its place: visible, not a failure.
        ET.SubElement(case, "skipped", message=xml_text(job.reason or "retried"))
    out = ET.SubElement(case, "system-out")
    out.text = xml_text(f"Studio: {job.link}")
    return case


def _time_lines(job: JobState) -> list[str]:
    lines: list[str] = []
    if run_time(job) is not None:
        how = (
            "start to end, as Azure ML recorded them"
            if run_time_label(job) == RAN
            else "amlwait's own measure: creation or first read to the read that saw it end"
        )
        lines.append(f"ran: {format_run_time(job)} ({how})")
    for label, seconds in (("queued", queued_seconds(job)), ("total", total_seconds(job))):
        if seconds is not None and run_time_label(job) == RAN:
            lines.append(f"{label}: {format_duration(seconds)}")
    for label, moment in (("started", job.started_at), ("ended", job.ended_at)):
        if moment is not None:
            lines.append(f"{label}: {_timestamp(moment)}Z")
    return lines


def _is_failure(job: JobState) -> bool:
    return job.outcome is not None and job.outcome.is_bad


def _is_error(job: JobState) -> bool:
    return job.outcome is None or job.outcome is Outcome.UNFINISHED


def _span(jobs: Sequence[JobState], result: WaitResult) -> tuple[float, float]:
    """The earliest known start and the last end of ``jobs``."""
    starts: list[float] = []
    ends: list[float] = []
    for job in jobs:
        seen = seen_seconds(job)
        if job.finished_at is not None and seen is not None:
            starts.append(job.finished_at - seen)
        elif job.first_seen is not None:
            starts.append(job.first_seen)
        if job.started_at is not None:
            starts.append(job.started_at)
        ends.append(job.finished_at if job.finished_at is not None else result.ended_at)
        if job.ended_at is not None:
            ends.append(job.ended_at)
    start = min(starts, default=result.started_at)
    end = max(ends, default=result.ended_at)
    return start, max(start, end)


def _set_counts(
    element: ET.Element,
    tests: int,
    failures: int,
    errors: int,
    skipped: int,
    start: float,
    end: float,
) -> None:
    element.set("tests", str(tests))
    element.set("failures", str(failures))
    element.set("errors", str(errors))
    element.set("skipped", str(skipped))
    element.set("time", _seconds(end - start))
    element.set("timestamp", _timestamp(start))


def _set_totals(root: ET.Element, suites: Sequence[_Suite], result: WaitResult) -> None:
    start, end = _span([job for suite in suites for job in suite.jobs], result)
    _set_counts(
        root,
        sum(len(suite.jobs) for suite in suites),
        sum(suite.failures for suite in suites),
        sum(suite.errors for suite in suites),
        sum(suite.skipped for suite in suites),
        start,
        end,
    )


def _seconds(value: float) -> str:
    return f"{max(0.0, value):.3f}"


def _timestamp(moment: float) -> str:
    stamp = dt.datetime.fromtimestamp(moment, tz=dt.timezone.utc)
    return stamp.replace(tzinfo=None).isoformat(timespec="seconds")


__all__ = ["render_junit", "xml_text"]
