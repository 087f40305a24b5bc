"""What a person sees while ``amlwait wait`` runs.

Plain lines when stdout is not a terminal (pipeline logs): one per state change
(``PLANT001_CIRCUIT01_2025_11_01  Running -> Completed  (14m02s)``, the time being how
long the job was seen in its previous state), warnings, a heartbeat at most every five
minutes while nothing else is said, and a final summary table. On a terminal, a live
table (Rich) replaces the per-change lines.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

from amlwait.core.duration import format_duration
from amlwait.core.status import TERMINAL, Outcome
from amlwait.core.tracker import JobState
from amlwait.core.wording import count
from amlwait.events import (
    CancelSent,
    JobFinished,
    JobMissing,
    JobRetried,
    StatusChanged,
    Tick,
    WaitEvent,
    WaitStarted,
    Warning_,
)
from amlwait.result import (
    TIME_LEGEND,
    WaitResult,
    format_run_time,
    reason_text,
    run_time,
    sort_for_report,
)

HEARTBEAT_SECONDS = 300.0


def _utc(moment: float) -> str:
    if moment == float("inf"):
        return "never"
    stamp = dt.datetime.fromtimestamp(moment, tz=dt.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M:%SZ")


def describe_counts(counts: Counter[str] | dict[str, int]) -> str:
    order = ["succeeded", "failed", "canceled", "not_found"]
    parts = [f"{counts[k]} {k.replace('_', ' ')}" for k in order if counts.get(k)]
    rest = sorted((k, v) for k, v in counts.items() if k not in order and v)
    parts += [f"{v} {k}" for k, v in rest]
    return ", ".join(parts)


REASON_WIDTH = 300


def summary_lines(result: WaitResult) -> list[str]:
    """The final table: one row per job (RAN: its run time, see :data:`TIME_LEGEND`), the
    reason of each job that ended badly on the line below it, the legend, the totals."""
    jobs = sort_for_report(result.jobs)
    width = max(len("JOB"), *(len(job.name) for job in jobs))
    lines = [f"{'JOB':<{width}}  {'STATUS':<15}  {'OUTCOME':<10}  {'RAN':>9}  LINK"]
    for job in jobs:
        outcome = job.outcome.value if job.outcome else "unfinished"
        lines.append(
            f"{job.name:<{width}}  {job.status or 'NotFound':<15}  {outcome:<10}  "
            f"{format_run_time(job):>9}  {job.link}"
        )
        bad = job.outcome is not None and (job.outcome.is_bad or job.outcome is Outcome.RETRIED)
        if bad and job.reason:
            lines.append(f"    {reason_text(job, REASON_WIDTH)}")
    if any(run_time(job) is not None for job in jobs):
        lines.append(f"RAN: {TIME_LEGEND}")
    counts = Counter(job.outcome.value if job.outcome else "unfinished" for job in jobs)
    elapsed = format_duration(result.ended_at - result.started_at)
    lines.append(
        f"{result.outcome.value}: {count(len(jobs), 'job')} — {describe_counts(counts)} — "
        f"{elapsed}, {count(result.requests, 'request')}"
    )
    return lines


class PlainReporter:
    """Line-per-event output for logs."""

    def __init__(
        self,
        out: TextIO,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        line_filter: Callable[[str], str] | None = None,
    ) -> None:
        """``line_filter`` rewrites each line before it is printed: in a pipeline,
        :func:`amlwait.devops.vso.inert`, so a status, reason or name from outside
        cannot start a logging command."""
        self.out = out
        self.heartbeat = heartbeat
        self.line_filter = line_filter
        self._last_line_at: float | None = None

    def say(self, text: str, at: float | None = None) -> None:
        line = text if self.line_filter is None else self.line_filter(text)
        print(line, file=self.out, flush=True)
        if at is not None:
            self._last_line_at = at

    def __call__(self, event: WaitEvent) -> None:
        if isinstance(event, WaitStarted):
            where = ", ".join(str(w) for w in event.workspaces)
            how = f" (listed by tag {event.tag})" if event.tag else ""
            left = format_duration(event.deadline - event.at)
            self.say(
                f"Waiting for {count(len(event.jobs), 'job')} in {where}{how}; "
                f"deadline {_utc(event.deadline)} ({left})",
                event.at,
            )
        elif isinstance(event, StatusChanged):
            if event.old is None:
                self.say(f"{event.job.name}  {event.new}", event.at)
            else:
                took = f"  ({format_duration(event.in_previous)})" if event.in_previous else ""
                self.say(f"{event.job.name}  {event.old} -> {event.new}{took}", event.at)
        elif isinstance(event, JobFinished) and event.job.reason:
            job = event.job
            after = f" after {format_run_time(job)}" if job.status in TERMINAL else ""
            self.say(
                f"{job.name}  {event.outcome.value}{after}: {reason_text(job, REASON_WIDTH)}",
                event.at,
            )
        elif isinstance(event, JobRetried):
            self.say(
                f"{event.old.name}  Failed -> retried as {event.new.name} "
                f"(retry {event.new.attempt - 1} of this wait)",
                event.at,
            )
        elif isinstance(event, JobMissing):
            self.say(f"{event.job.name}  not found yet; still looking", event.at)
        elif isinstance(event, Warning_):
            self.say(f"warning: {event.message}", event.at)
        elif isinstance(event, CancelSent):
            if event.error:
                self.say(f"{event.job.name}  cancel failed: {event.error}", event.at)
            else:
                self.say(f"{event.job.name}  cancel requested", event.at)
        elif isinstance(event, Tick):
            quiet_since = self._last_line_at
            if quiet_since is not None and event.at - quiet_since >= self.heartbeat:
                self.say(
                    f"... {event.finished}/{event.total} finished "
                    f"({describe_counts(event.counts)}); {format_duration(event.remaining)} left",
                    event.at,
                )

    def finish(self, result: WaitResult) -> None:
        for line in summary_lines(result):
            self.say(line)


class LiveReporter:
    """A live Rich table on a terminal; the plain summary at the end."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.live = Live(console=self.console, refresh_per_second=4, transient=True)
        self.jobs: list[JobState] = []
        self.started_at = 0.0
        self.deadline = float("inf")
        self.now = 0.0
        self.messages: list[str] = []
        self._plain = PlainReporter(out)

    def __call__(self, event: WaitEvent) -> None:
        if isinstance(event, WaitStarted):
            self.jobs = list(event.jobs)
            self.started_at, self.deadline, self.now = event.at, event.deadline, event.at
            self.live.start()
        elif isinstance(event, Warning_):
            self.messages = ([*self.messages, f"warning: {event.message}"])[-5:]
        elif isinstance(event, (Tick, StatusChanged, JobFinished)):
            self.now = event.at
        self.live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        table = Table(expand=False, show_edge=False)
        for column in ("job", "status", "outcome", "in state"):
            table.add_column(column)
        shown = sort_for_report(self.jobs)[:25]
        for job in shown:
            since = job.status_since
            in_state = format_duration(self.now - since) if since is not None else "-"
            outcome = job.outcome.value if job.outcome else ""
            style = (
                "red"
                if job.outcome and job.outcome.is_bad
                else ("green" if job.outcome is Outcome.SUCCEEDED else "")
            )
            table.add_row(job.name, job.status or "not found", outcome, in_state, style=style)
        finished = sum(1 for job in self.jobs if job.finished)
        left = format_duration(max(0.0, self.deadline - self.now))
        header = f"{finished}/{len(self.jobs)} finished — {left} left"
        if len(self.jobs) > len(shown):
            header += f" (showing {len(shown)})"
        return Group(header, table, *self.messages)

    def finish(self, result: WaitResult) -> None:
        self.live.stop()
        self._plain.finish(result)
