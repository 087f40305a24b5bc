"""What ``amlwait wait`` tells an Azure Pipelines agent, besides its plain lines.

Active when ``TF_BUILD=True`` (set on every agent) or with ``--azure-devops``:

- ``##[section]`` at the start (how many jobs, which workspaces, the deadline), the job
  list inside a ``##[group]``, and a warning when the deadline lies beyond what a
  Microsoft-hosted agent allows (60 minutes free, 360 paid);
- ``##vso[task.setprogress]`` with the share of jobs finished, whenever it changes;
- ``##vso[task.logissue type=error]`` per job that ends badly (:func:`job_issue`: how
  long it ran, Azure ML's error code and message, Studio link) and ``type=warning`` for
  stalls, NotResponding and Unknown;
- at the end, output variables (``isoutput=true``) — ``outcome``, ``total``,
  ``succeeded``, ``failed``, ``canceled``, ``notFound``, ``unfinished``,
  ``failedJobs`` (comma-separated) — and ``##vso[task.uploadsummary]`` of the Markdown
  summary.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import TextIO

from amlwait.core.duration import format_duration
from amlwait.core.status import TERMINAL, JobStatus, Outcome
from amlwait.core.tracker import JobState
from amlwait.core.wording import count
from amlwait.devops import vso
from amlwait.events import JobFinished, JobRetried, Tick, WaitEvent, WaitStarted, Warning_
from amlwait.result import WaitResult, format_run_time, reason_text

HOSTED_FREE_MINUTES = 60
HOSTED_PAID_MINUTES = 360


def in_pipeline(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("TF_BUILD", "").lower() == "true"


def looks_hosted(environ: Mapping[str, str] | None = None) -> bool | None:
    """True on a Microsoft-hosted agent, False on a self-hosted one, None when unknown."""
    env = os.environ if environ is None else environ
    name = env.get("AGENT_NAME")
    if name is None:
        return None
    return name.startswith(("Hosted Agent", "Azure Pipelines", "Hosted"))


def output_variables(result: WaitResult) -> dict[str, str]:
    current = [job for job in result.jobs if job.current]
    counts = Counter(job.outcome.value if job.outcome else "unfinished" for job in current)
    bad = [job.name for job in current if job.outcome is not None and job.outcome.is_bad]
    return {
        "outcome": result.outcome.value,
        "total": str(len(current)),
        "succeeded": str(counts[Outcome.SUCCEEDED.value]),
        "failed": str(counts[Outcome.FAILED.value]),
        "canceled": str(counts[Outcome.CANCELED.value]),
        "notFound": str(counts[Outcome.NOT_FOUND.value]),
        "unfinished": str(counts[Outcome.UNFINISHED.value]),
        "retried": str(sum(1 for job in result.jobs if not job.current)),
        "failedJobs": ",".join(bad),
    }


ISSUE_REASON_WIDTH = 400


def job_issue(job: JobState) -> str:
    """The error line for a job that ended badly: ``NAME failed after 2.3s: UserError: …
    sensor table … does not exist — STUDIO_LINK`` (``~`` marks amlwait's own measure of
    the time, see :data:`amlwait.result.TIME_LEGEND`)."""
    status = job.status or "not found"
    what = "failed" if status == JobStatus.FAILED.value else f"ended {status}"
    after = f" after {format_run_time(job)}" if status in TERMINAL else ""
    reason = reason_text(job, ISSUE_REASON_WIDTH)
    return f"{job.name} {what}{after}" + (f": {reason}" if reason else "") + f" — {job.link}"


class AzureDevOpsReporter:
    """Logging commands for the agent; pair it with the plain line reporter."""

    def __init__(self, out: TextIO, environ: Mapping[str, str] | None = None) -> None:
        self.out = out
        self.environ = dict(os.environ if environ is None else environ)
        self._progress = -1

    def emit(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def __call__(self, event: WaitEvent) -> None:
        if isinstance(event, WaitStarted):
            self._started(event)
        elif isinstance(event, Tick):
            percent = int(100 * event.finished / event.total) if event.total else 100
            if percent != self._progress:
                self._progress = percent
                self.emit(
                    vso.set_progress(
                        percent, f"{event.finished} of {count(event.total, 'job')} finished"
                    )
                )
        elif isinstance(event, JobFinished) and event.outcome.is_bad:
            self.emit(vso.log_issue("error", job_issue(event.job), code="amlwait.job"))
        elif isinstance(event, JobRetried):
            self.emit(
                vso.log_issue(
                    "warning",
                    f"{event.old.name} failed; retried as {event.new.name} "
                    f"(attempt {event.new.attempt}): {event.old.link}",
                    code="amlwait.retry",
                )
            )
        elif isinstance(event, Warning_):
            self.emit(
                vso.log_issue(
                    "warning", f"{event.message}: {event.job.link}", code=f"amlwait.{event.kind}"
                )
            )

    def _started(self, event: WaitStarted) -> None:
        where = ", ".join(str(w) for w in event.workspaces)
        tag = f", listed by tag {event.tag}" if event.tag else ""
        left = event.deadline - event.at
        self.emit(
            vso.formatting(
                "section",
                f"amlwait: waiting for {count(len(event.jobs), 'job')} in {where}{tag}; "
                f"deadline in {format_duration(left)}",
            )
        )
        self.emit(vso.formatting("group", f"Jobs ({len(event.jobs)})"))
        for job in event.jobs:
            self.emit(vso.inert(f"{job.name}  {job.ref.workspace}"))
        self.emit(vso.formatting("endgroup", ""))
        hosted = looks_hosted(self.environ)
        minutes = left / 60
        if hosted and minutes > HOSTED_FREE_MINUTES:
            self.emit(
                vso.log_issue(
                    "warning",
                    f"the deadline is {format_duration(left)} away but Microsoft-hosted agents "
                    f"stop jobs after {HOSTED_FREE_MINUTES} min (free) or "
                    f"{HOSTED_PAID_MINUTES} min "
                    "(paid): set --timeout below the job's timeoutInMinutes, or wait agentlessly",
                    code="amlwait.deadline",
                )
            )
        elif hosted is None and minutes > HOSTED_PAID_MINUTES:
            self.emit(
                vso.log_issue(
                    "warning",
                    f"the deadline is {format_duration(left)} away; on a Microsoft-hosted agent "
                    f"the job stops after {HOSTED_FREE_MINUTES}/{HOSTED_PAID_MINUTES} min",
                    code="amlwait.deadline",
                )
            )

    def finish(self, result: WaitResult, summary_path: str | None) -> None:
        for name, value in output_variables(result).items():
            self.emit(vso.set_variable(name, value))
        if summary_path is not None:
            self.emit(vso.upload_summary(os.path.abspath(summary_path)))
