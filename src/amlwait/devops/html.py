"""A wait's result as one self-contained HTML page: headline, counts, a timeline, a table.

The page has no external assets and no script: inline CSS, and the timeline is an inline
SVG drawn here. It holds:

- the headline and facts of :mod:`amlwait.devops.summary` and the jobs per outcome;
- a **timeline**: one row per job, every job drawn, ordered by start (then name). The
  x axis runs from the wait's start (or the earliest job creation, when earlier) to its
  end (or the latest job end), with ticks labelled relative to the wait's start and a
  dashed line at the deadline when it falls inside. A row is built from the job's
  ``history``:

  * a thin bar from ``created_at`` to the first status seen (created, not yet watched),
    or from the wait's start to the end for a job never found;
  * a light bar for each stretch in a :data:`QUEUED_STATUSES` status;
  * a full bar for each stretch in a :data:`RUNNING_STATUSES` status or any other
    non-terminal one (NotResponding, Paused, Unknown, statuses added to the API later);
  * a finish marker (:data:`MARKER_WIDTH` px, full row height) at ``finished_at``, or at
    the wait's end for an unfinished job.

  All three take the job's outcome colour (:data:`PALETTE`: succeeded green, failed red,
  canceled grey, not found and unfinished orange), as exact sRGB values drawn with
  ``crispEdges``, so rows can be counted in a screenshot. Rows keep a gap between them.
  Up to :data:`LABEL_LIMIT` jobs rows are 16 px with the job name as a label; beyond,
  6 px and then (above 400 jobs) 4 px rows without labels — each row still has a
  tooltip (``<title>``) with its name, status, outcome, how long it ran (``~``: amlwait's
  own measure) and, for a job that ended badly, its reason (``UserError: …``);
- the per-job table of the summary, for every job, in
  :func:`amlwait.result.sort_for_report` order.

All text is HTML-escaped and stripped of control characters; links are only made for
``http(s)`` URLs.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from amlwait.core.duration import format_duration
from amlwait.core.status import JobStatus, Outcome
from amlwait.core.tracker import JobState
from amlwait.core.wording import count
from amlwait.devops.summary import (
    OUTCOME_ORDER,
    encode_url,
    headline_parts,
    outcome_of,
    wait_facts,
)
from amlwait.result import (
    TIME_LEGEND,
    WaitResult,
    format_run_time,
    parse_iso,
    queued_seconds,
    reason_text,
    run_time,
    sort_for_report,
)

REASON_WIDTH = 500
BAD_OUTCOMES = frozenset(o.value for o in Outcome if o.is_bad)

QUEUED_STATUSES: frozenset[str] = frozenset(
    s.value
    for s in (
        JobStatus.NOT_STARTED,
        JobStatus.QUEUED,
        JobStatus.PREPARING,
        JobStatus.STARTING,
        JobStatus.PROVISIONING,
        JobStatus.SCHEDULED,
    )
)
RUNNING_STATUSES: frozenset[str] = frozenset(
    s.value for s in (JobStatus.RUNNING, JobStatus.FINALIZING, JobStatus.CANCEL_REQUESTED)
)
TERMINAL_STATUSES: frozenset[str] = frozenset(
    s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)
)


@dataclass(frozen=True)
class Shades:
    """One outcome's colours: waiting (light), running (full), finish marker (dark)."""

    waiting: str
    running: str
    marker: str


PALETTE: dict[str, Shades] = {
    Outcome.SUCCEEDED.value: Shades("#a8dfb4", "#2b9348", "#0b4f1e"),
    Outcome.FAILED.value: Shades("#f4b0b0", "#d62828", "#7a0c0c"),
    Outcome.CANCELED.value: Shades("#d2d5da", "#8a9099", "#3c4047"),
    Outcome.NOT_FOUND.value: Shades("#fcd49c", "#f08c00", "#8c4a00"),
    Outcome.UNFINISHED.value: Shades("#fcd49c", "#f08c00", "#8c4a00"),
    Outcome.RETRIED.value: Shades("#d9c6ef", "#7b4fb0", "#3e1f66"),
}
PLOT_BACKGROUND = "#f3f5fa"
GRID_COLOUR = "#d9dce6"
DEADLINE_COLOUR = "#364fc7"

LABEL_LIMIT = 100
MARKER_WIDTH = 3
PLOT_WIDTH = 960
LABEL_WIDTH = 250
RIGHT_MARGIN = 40
AXIS_HEIGHT = 30
MAX_LABEL_CHARS = 36

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NICE_STEPS = (
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600,
    86400, 2 * 86400, 7 * 86400,
)  # fmt: skip


def text(value: str) -> str:
    """``value`` safe as HTML text or attribute value."""
    return html.escape(_CONTROL.sub("", value), quote=True)


# -- the timeline's data ---------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A stretch of one job's row: ``kind`` is ``unseen``, ``waiting`` or ``running``."""

    kind: str
    start: float
    end: float


@dataclass(frozen=True)
class Row:
    job: JobState
    outcome: str
    start: float
    end: float
    segments: tuple[Segment, ...]


def timeline_row(job: JobState, result: WaitResult) -> Row:
    """The segments of ``job``'s row (see the module docstring)."""
    end = job.finished_at if job.finished_at is not None else result.ended_at
    segments: list[Segment] = []
    history = sorted(job.history)
    if not history:
        start = job.first_seen if job.first_seen is not None else result.started_at
        if end > start:
            segments.append(Segment("unseen", start, end))
        return Row(job, outcome_of(job), min(start, end), end, tuple(segments))
    first_at = history[0][0]
    created = parse_iso(job.created_at)
    start = min(created, first_at) if created is not None else first_at
    if start < first_at:
        segments.append(Segment("unseen", start, first_at))
    for (at, status), (next_at, _) in zip(history, [*history[1:], (end, "")], strict=True):
        stop = min(next_at, end)
        if status in TERMINAL_STATUSES or stop <= at:
            continue
        kind = "waiting" if status in QUEUED_STATUSES else "running"
        segments.append(Segment(kind, at, stop))
    return Row(job, outcome_of(job), min(start, end), end, tuple(segments))


def timeline_rows(result: WaitResult) -> list[Row]:
    """One row per job of ``result``, by start then name."""
    rows = [timeline_row(job, result) for job in result.jobs]
    return sorted(rows, key=lambda row: (row.start, row.job.name))


# -- drawing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geometry:
    pitch: int
    bar: int
    labels: bool

    @classmethod
    def for_rows(cls, count: int) -> _Geometry:
        if count <= LABEL_LIMIT:
            return cls(16, 11, True)
        if count <= 400:
            return cls(6, 4, False)
        return cls(4, 3, False)

    @property
    def gap(self) -> int:
        return self.pitch - self.bar


def render_timeline(result: WaitResult) -> str:
    """The timeline chart as an inline ``<svg>`` element."""
    rows = timeline_rows(result)
    geometry = _Geometry.for_rows(len(rows))
    label_width = LABEL_WIDTH if geometry.labels else 8
    plot_left, plot_top = label_width, AXIS_HEIGHT
    plot_height = len(rows) * geometry.pitch + geometry.gap
    width, height = plot_left + PLOT_WIDTH + RIGHT_MARGIN, plot_top + plot_height + 4

    t0 = min([result.started_at, *(row.start for row in rows)])
    t1 = max([result.ended_at, *(row.end for row in rows)])
    span = max(t1 - t0, 1.0)
    inner = PLOT_WIDTH - 2 * MARKER_WIDTH

    def x(moment: float) -> int:
        return plot_left + MARKER_WIDTH + round((moment - t0) / span * inner)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Timeline of {count(len(rows), "job")}">',
        f'<rect x="{plot_left}" y="{plot_top}" width="{PLOT_WIDTH}" height="{plot_height}" '
        f'fill="{PLOT_BACKGROUND}" shape-rendering="crispEdges"/>',
    ]
    for moment, label in _ticks(result.started_at, t0, t1):
        tick_x = x(moment)
        parts.append(
            f'<line x1="{tick_x}.5" y1="{plot_top - 4}" x2="{tick_x}.5" '
            f'y2="{plot_top + plot_height}" stroke="{GRID_COLOUR}" stroke-width="1" '
            'shape-rendering="crispEdges"/>'
            f'<text x="{tick_x}" y="{plot_top - 8}" class="tick">{text(label)}</text>'
        )
    if t0 <= result.deadline <= t1:
        deadline_x = x(result.deadline)
        parts.append(
            f'<line x1="{deadline_x}.5" y1="{plot_top - 4}" x2="{deadline_x}.5" '
            f'y2="{plot_top + plot_height}" stroke="{DEADLINE_COLOUR}" stroke-width="1" '
            'stroke-dasharray="4 3" shape-rendering="crispEdges"><title>deadline</title></line>'
        )
    parts.append('<g shape-rendering="crispEdges">')
    for index, row in enumerate(rows):
        top = plot_top + geometry.gap + index * geometry.pitch
        parts.append(_draw_row(row, top, geometry, x, plot_left))
    parts.append("</g></svg>")
    return "".join(parts)


def _draw_row(
    row: Row, top: int, geometry: _Geometry, x: Callable[[float], int], plot_left: int
) -> str:
    shades = PALETTE.get(row.outcome, PALETTE[Outcome.UNFINISHED.value])
    took = run_time(row.job)
    tooltip = f"{row.job.name} — {row.job.status or 'NotFound'} — {row.outcome.replace('_', ' ')}"
    if took is not None:
        tooltip += f" — ran {format_run_time(row.job)}"
    if row.job.reason and row.outcome in BAD_OUTCOMES:
        tooltip += f" — {reason_text(row.job, REASON_WIDTH)}"
    parts = [f"<g><title>{text(tooltip)}</title>"]
    if geometry.labels:
        parts.append(
            f'<text x="{plot_left - 6}" y="{top + geometry.bar - 2}" class="label">'
            f"{text(_shorten(row.job.name))}</text>"
        )
    thin = max(1, geometry.bar // 3)
    for segment in row.segments:
        left, right = x(segment.start), x(segment.end)
        seg_width = max(1, right - left)
        if segment.kind == "unseen":
            seg_top, seg_height, fill = top + (geometry.bar - thin) // 2, thin, shades.waiting
        else:
            fill = shades.waiting if segment.kind == "waiting" else shades.running
            seg_top, seg_height = top, geometry.bar
        parts.append(
            f'<rect x="{left}" y="{seg_top}" width="{seg_width}" height="{seg_height}" '
            f'fill="{fill}"/>'
        )
    marker_left = x(row.end) - MARKER_WIDTH // 2
    parts.append(
        f'<rect x="{marker_left}" y="{top}" width="{MARKER_WIDTH}" height="{geometry.bar}" '
        f'fill="{shades.marker}"/></g>'
    )
    return "".join(parts)


def _shorten(name: str) -> str:
    return name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…"


def _ticks(origin: float, t0: float, t1: float) -> list[tuple[float, str]]:
    """Round moments relative to ``origin`` covering ``[t0, t1]``, at most ~8 of them."""
    span = max(t1 - t0, 1.0)
    step = next((s for s in _NICE_STEPS if span / s <= 8), span / 8)
    first = math.ceil((t0 - origin) / step)
    last = math.floor((t1 - origin) / step)
    ticks = []
    for k in range(first, last + 1):
        offset = k * step
        label = "0" if k == 0 else ("+" if k > 0 else "-") + _tick_label(abs(offset))
        ticks.append((origin + offset, label))
    return ticks


def _tick_label(seconds: float) -> str:
    """``45s``, ``30m``, ``1h30m``, ``2d``: the nonzero parts of a round duration."""
    if seconds < 1:
        return f"{seconds:.1f}s"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])


# -- the page --------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       margin: 24px; background: #ffffff; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
.headline { font-size: 18px; margin: 0 0 8px; }
.facts { color: #57606a; margin: 4px 0; }
.counts, .legend { display: flex; flex-wrap: wrap; gap: 16px; list-style: none; padding: 0;
                   margin: 8px 0; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px;
          vertical-align: -1px; }
.swatch.thin { height: 4px; vertical-align: 3px; }
.chart { overflow-x: auto; }
svg.timeline text { font: 11px system-ui, sans-serif; fill: #1f2328; }
svg.timeline text.label { text-anchor: end; }
svg.timeline text.tick { text-anchor: middle; fill: #57606a; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid #e5e7eb;
         vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name { font-family: ui-monospace, monospace; word-break: break-all; }
"""


def render_html(result: WaitResult) -> str:
    """The self-contained HTML page of ``result`` (see the module docstring)."""
    word, meaning = headline_parts(result)
    counts = Counter(outcome_of(job) for job in result.jobs)
    count_items = "".join(
        f'<li><span class="swatch" style="background:{PALETTE[o].running}"></span>'
        f"{text(o.replace('_', ' ').capitalize())}: <strong>{counts[o]}</strong></li>"
        for o in OUTCOME_ORDER
        if counts[o]
    )
    facts = " · ".join(wait_facts(result))
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f"<title>amlwait — {text(word)}</title><style>{_CSS}</style></head><body>",
            "<h1>amlwait</h1>",
            f'<p class="headline"><strong>{text(word)}</strong> — {text(meaning)}</p>',
            f'<ul class="counts">{count_items}</ul>',
            f'<p class="facts">{text(facts[:1].upper() + facts[1:])}</p>',
            "<h2>Timeline</h2>",
            _legend(),
            f'<div class="chart">{render_timeline(result)}</div>',
            "<h2>Jobs</h2>",
            _table(sort_for_report(result.jobs), result),
            "</body></html>\n",
        ]
    )


def _legend() -> str:
    items = []
    seen: set[Shades] = set()
    for outcome in OUTCOME_ORDER:
        shades = PALETTE[outcome]
        if shades in seen:
            continue
        seen.add(shades)
        names = " / ".join(o.replace("_", " ") for o in OUTCOME_ORDER if PALETTE[o] == shades)
        items.append(
            f'<li><span class="swatch" style="background:{shades.running}"></span>'
            f"{text(names)}</li>"
        )
    grey = PALETTE[Outcome.CANCELED.value]
    items += [
        f'<li><span class="swatch" style="background:{grey.waiting}"></span>'
        "queued, preparing, starting (light)</li>",
        f'<li><span class="swatch" style="background:{grey.running}"></span>'
        "running, finalizing (full)</li>",
        f'<li><span class="swatch" style="background:{grey.marker};width:3px"></span>'
        "end seen (marker)</li>",
        f'<li><span class="swatch thin" style="background:{grey.waiting}"></span>'
        "before amlwait saw it, or never found (thin)</li>",
        f'<li><span class="swatch" style="background:{DEADLINE_COLOUR};width:1px"></span>'
        "deadline</li>",
    ]
    return f'<ul class="legend">{"".join(items)}</ul>'


def _table(jobs: Iterable[JobState], result: WaitResult) -> str:
    several_workspaces = len({job.ref.workspace for job in result.jobs}) > 1
    header = ["Job", "Status", "Outcome", "Ran", "Queued", "Reason", "Studio"]
    if several_workspaces:
        header.insert(1, "Workspace")
    rows = ["<table><thead><tr>", *(f"<th>{h}</th>" for h in header), "</tr></thead><tbody>"]
    for job in jobs:
        outcome = outcome_of(job)
        queued = queued_seconds(job)
        colour = PALETTE.get(outcome, PALETTE[Outcome.UNFINISHED.value]).marker
        cells = [
            f'<td class="name">{text(job.name)}</td>',
            f"<td>{text(job.status or 'NotFound')}</td>",
            f'<td style="color:{colour}">{text(outcome.replace("_", " "))}</td>',
            f'<td class="num">{text(format_run_time(job))}</td>',
            f'<td class="num">{format_duration(queued) if queued is not None else "-"}</td>',
            f"<td>{text(reason_text(job, REASON_WIDTH, one_line=False))}</td>",
            f"<td>{_link(job.link)}</td>",
        ]
        if several_workspaces:
            cells.insert(1, f"<td>{text(job.ref.workspace.workspace)}</td>")
        rows.append(f'<tr class="job {outcome}">{"".join(cells)}</tr>')
    rows.append("</tbody></table>")
    rows.append(f"<p>Queued = creation to start of the run; Ran: {text(TIME_LEGEND)}.</p>")
    return "".join(rows)


def _link(url: str) -> str:
    target = encode_url(url)
    if target is None:
        return text(url)
    return f'<a href="{text(target)}">open</a>'


__all__ = [
    "LABEL_LIMIT",
    "MARKER_WIDTH",
    "PALETTE",
    "PLOT_BACKGROUND",
    "QUEUED_STATUSES",
    "RUNNING_STATUSES",
    "Row",
    "Segment",
    "Shades",
    "render_html",
    "render_timeline",
    "text",
    "timeline_row",
    "timeline_rows",
]
