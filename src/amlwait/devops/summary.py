"""A wait's result as Markdown for the Azure DevOps run-summary tab (``task.uploadsummary``).

Layout, top to bottom:

1. A headline: the batch outcome as a bold word and what it means, e.g.
   ``**Failed** — 3 of 120 jobs failed`` (failed counts every job that ended badly: Failed,
   Canceled, not found), ``**Succeeded** — all 120 jobs completed``, ``**Timed out** — 5 of
   120 jobs unfinished at the deadline``, ``**Interrupted** — …``.
2. Jobs per outcome (succeeded, failed, canceled, not found, unfinished; zeros left out).
3. The wait: start, deadline, elapsed time, requests sent, jobs cancelled by amlwait.
4. One table row per job — job, (workspace, when the wait spans several), final status,
   outcome, ran and queued (:func:`amlwait.result.run_time`,
   :func:`amlwait.result.queued_seconds`; ``~`` marks amlwait's own measure), reason
   (``UserError: …``, at most :data:`REASON_WIDTH` characters keeping the end), Studio link — in
   :func:`amlwait.result.sort_for_report` order: jobs that ended badly, then unfinished
   ones, then the slowest first.

Above :data:`FULL_TABLE_LIMIT` jobs the table keeps every job that ended badly plus the
first :data:`KEPT_OTHERS` of the rest (unfinished, then the slowest) and says how many it
leaves out, so the summary stays a reasonable size.

Cells are escaped: CR/LF and other control characters become spaces; ``\\ ` * _ [ ] | ~``
are backslash-escaped and ``& < >`` become entities, so no name or message can end a row,
open a tag or start emphasis. Links are ``http(s)`` only, with characters that could end
the link or the cell percent-encoded.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from urllib.parse import quote

from amlwait.core.duration import format_duration
from amlwait.core.tracker import BatchOutcome, JobState
from amlwait.core.wording import count
from amlwait.result import (
    TIME_LEGEND,
    WaitResult,
    format_run_time,
    queued_seconds,
    reason_text,
    sort_for_report,
)

REASON_WIDTH = 500

FULL_TABLE_LIMIT = 500
KEPT_OTHERS = 200

OUTCOME_ORDER = ("succeeded", "failed", "canceled", "not_found", "unfinished", "retried")

_HEADLINE_WORD = {
    BatchOutcome.SUCCEEDED: "Succeeded",
    BatchOutcome.FAILED: "Failed",
    BatchOutcome.TIMED_OUT: "Timed out",
    BatchOutcome.INTERRUPTED: "Interrupted",
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
# RFC 3986's reserved and unreserved characters, less the brackets and parentheses that
# could end a Markdown link, are kept as they are in links; "%" too when it starts an escape.
_URL_SAFE = ":/?#@!$&'*+,;=-._~%"
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def escape_cell(text: str) -> str:
    """``text`` as one Markdown table cell showing exactly these characters."""
    text = _CONTROL.sub(" ", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def encode_url(url: str) -> str | None:
    """``url`` percent-encoded so it is one safe token, or ``None`` unless http(s).

    Characters outside RFC 3986 (spaces, CR/LF, ``<``, ``|``, a job name's odd characters),
    parentheses, brackets and a ``%`` that starts no escape are percent-encoded; existing
    escapes are kept.
    """
    if not re.match(r"^https?://", url, re.IGNORECASE):
        return None
    return quote(_BARE_PERCENT.sub("%25", url), safe=_URL_SAFE)


def markdown_link(label: str, url: str) -> str:
    """``[label](url)`` for an http(s) URL (see :func:`encode_url`), else the URL as text."""
    target = encode_url(url)
    if target is None:
        return escape_cell(url)
    # Entities are decoded in link targets, so "&" is written as one.
    return f"[{escape_cell(label)}]({target.replace('&', '&amp;')})"


def outcome_of(job: JobState) -> str:
    return job.outcome.value if job.outcome is not None else "unfinished"


def headline_parts(result: WaitResult) -> tuple[str, str]:
    """The batch outcome as a word and what it means: ``("Failed", "3 of 120 jobs failed")``."""
    counts = Counter(outcome_of(job) for job in result.jobs)
    total = len(result.jobs)
    bad = counts["failed"] + counts["canceled"] + counts["not_found"]
    unfinished = counts["unfinished"]
    word = _HEADLINE_WORD.get(result.outcome, str(result.outcome))
    if result.outcome is BatchOutcome.SUCCEEDED:
        meaning = f"{'all ' if total > 1 else ''}{count(total, 'job')} completed"
    elif result.outcome is BatchOutcome.FAILED:
        meaning = f"{bad} of {count(total, 'job')} failed"
        if unfinished:
            meaning += f", {unfinished} unfinished"
    elif result.outcome is BatchOutcome.TIMED_OUT:
        meaning = f"{unfinished} of {count(total, 'job')} unfinished at the deadline"
    else:
        meaning = f"{unfinished} of {count(total, 'job')} unfinished when the wait was stopped"
    return word, meaning


def headline(result: WaitResult) -> str:
    """The first line: ``**Failed** — 3 of 120 jobs failed``."""
    word, meaning = headline_parts(result)
    return f"**{word}** — {meaning}"


def wait_facts(result: WaitResult) -> list[str]:
    """Start, deadline, elapsed time, requests, tag and cancellations, as short phrases."""
    facts = [
        f"started {utc(result.started_at)}",
        f"deadline {utc(result.deadline)}",
        f"elapsed {format_duration(result.ended_at - result.started_at)}",
        count(result.requests, "request"),
    ]
    if result.tag:
        facts.append(f"listed by tag {result.tag}")
    if result.canceled:
        facts.append(f"cancel requested for {count(len(result.canceled), 'job')}")
    return facts


def utc(moment: float) -> str:
    """``2026-01-01 00:00:00Z``; ``none`` for an infinite moment (no deadline)."""
    if math.isinf(moment):
        return "none"
    stamp = dt.datetime.fromtimestamp(moment, tz=dt.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M:%SZ")


def render_summary(result: WaitResult) -> str:
    """The Markdown summary of ``result`` (see the module docstring)."""
    lines = ["# amlwait", "", headline(result), ""]
    counts = Counter(outcome_of(job) for job in result.jobs)
    for outcome in OUTCOME_ORDER:
        if counts[outcome]:
            lines.append(f"- {outcome.replace('_', ' ').capitalize()}: {counts[outcome]}")
    facts = escape_cell(" · ".join(wait_facts(result)))
    lines += ["", facts[:1].upper() + facts[1:], ""]

    several_workspaces = len({job.ref.workspace for job in result.jobs}) > 1
    header = ["Job", "Status", "Outcome", "Ran", "Queued", "Reason", "Studio"]
    if several_workspaces:
        header.insert(1, "Workspace")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    shown, left_out = _rows(result)
    for job in shown:
        queued = queued_seconds(job)
        cells = [
            escape_cell(job.name),
            escape_cell(job.status or "NotFound"),
            escape_cell(outcome_of(job).replace("_", " ")),
            escape_cell(format_run_time(job)),
            format_duration(queued) if queued is not None else "-",
            escape_cell(reason_text(job, REASON_WIDTH, one_line=False)),
            markdown_link("open", job.link),
        ]
        if several_workspaces:
            cells.insert(1, escape_cell(job.ref.workspace.workspace))
        lines.append("| " + " | ".join(cells) + " |")
    if left_out:
        lines += [
            "",
            f"{left_out} more jobs are not listed (of {len(result.jobs)}: every job that "
            f"ended badly is listed, then the {KEPT_OTHERS} first of the others, unfinished "
            "then slowest).",
        ]
    lines += ["", escape_cell(f"Queued = creation to start of the run; Ran: {TIME_LEGEND}.")]
    return "\n".join(lines) + "\n"


def _rows(result: WaitResult) -> tuple[list[JobState], int]:
    ordered = sort_for_report(result.jobs)
    if len(ordered) <= FULL_TABLE_LIMIT:
        return ordered, 0
    bad = [job for job in ordered if job.outcome is not None and job.outcome.is_bad]
    others = [job for job in ordered if not (job.outcome is not None and job.outcome.is_bad)]
    kept = others[:KEPT_OTHERS]
    return bad + kept, len(others) - len(kept)


__all__ = [
    "FULL_TABLE_LIMIT",
    "KEPT_OTHERS",
    "encode_url",
    "escape_cell",
    "headline",
    "headline_parts",
    "markdown_link",
    "outcome_of",
    "render_summary",
    "utc",
    "wait_facts",
]
