"""Which MLflow searches a wake makes, and which jobs their answers say to read (sans-IO).

Azure ML serves every job as an MLflow run too. One search can ask which runs of a
batch have ended, whatever the batch's size, so the engine reads ARM only for those
(one GET each: ARM stays the truth) plus a slow safety net. This module decides; the
engine (:mod:`amlwait.readpath`) sends.

What Azure ML supports (its MLflow support matrix, cited in ``docs/read-path.md``):
filtering runs by tags with ``=`` (not ``!=``), ``AND`` only, ordering by run fields
(``start_time``, ``end_time``); *not* filtering by ``attributes.status`` nor by run
times. Its own filtering example is ``attributes.run_id IN (...)``. So:

- **With a tag** (its value as the jobs carry it): one search per workspace and tag value,
  ``tags.`KEY` = 'VALUE'`` ordered by ``end_time DESC``, ``page_size`` runs a page. Runs
  that ended come first, newest first (MLflow sorts runs without an end time last). Paging
  stops at the first run that ended before ``watermark - OVERLAP_MS`` (``watermark``: the
  newest end time an earlier search of this workspace saw), at the first run without an
  end time, or on the last page. If a page shows an ended run *after* one without an end
  time (the ordering is not MLflow's), every later search of that workspace reads every
  page.
- **Without a tag**: ``attributes.run_id IN (...)`` over the unfinished jobs,
  ``batch_size`` ids a request.

Either way a run whose MLflow status is ``FINISHED``, ``FAILED`` or ``KILLED`` and whose
job the tracker has not finished is *ended*: the engine wakes that job, so the engine's
listing schedule reads it by one GET (or lists the batch when many woke at once).
MLflow's statuses are coarse (NotResponding, Paused, Unknown have no equivalent), so
nothing else is taken from them. A search is sent only for jobs whose experiment is
known (from an ARM read): MLflow searches within experiments.

Searches are due every ``interval`` seconds from the first (``next_search``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from amlwait.core.jobs import WorkspaceRef
from amlwait.core.tracker import JobState

MLFLOW_ENDED = frozenset({"FINISHED", "FAILED", "KILLED"})
# A run may be given an end time a little before a search that missed it was answered:
# re-read this much below the watermark.
OVERLAP_MS = 120_000
DEFAULT_SEARCH_INTERVAL = 20.0
DEFAULT_PAGE_SIZE = 100
# Run ids per search without a tag: ~15 KB of filter at 30 characters a name (no limit
# is documented; a refused search makes --read-path auto fall back to ARM).
DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True)
class RunSearch:
    """One ``runs/search`` request (``experiments`` by name; the engine finds their ids)."""

    workspace: WorkspaceRef
    experiments: tuple[str, ...]
    filter: str
    max_results: int
    order_by: tuple[str, ...] = ()
    page_token: str | None = None
    by_tag: bool = False


@dataclass(frozen=True)
class SeenRun:
    """One run of a search answer: its id (the job's name), MLflow status, end (ms)."""

    run_id: str
    status: str
    end_time: int | None = None


@dataclass(frozen=True)
class SearchResult:
    """What one answer means: the jobs to wake (MLflow says they ended), and the next
    page to ask for (None: this search is done)."""

    ended: tuple[str, ...]
    next_page: RunSearch | None


def quote_value(value: str) -> str:
    """``value`` as an MLflow filter string literal."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"{value!r} holds both quote characters; MLflow cannot filter on it")


def tag_filter(key: str, value: str) -> str:
    """``tags.`KEY` = 'VALUE'`` (backquotes allow any key MLflow can name)."""
    if "`" in key:
        raise ValueError(f"the tag key {key!r} holds a backquote; MLflow cannot filter on it")
    return f"tags.`{key}` = {quote_value(value)}"


def run_id_filter(names: Sequence[str]) -> str:
    """``attributes.run_id IN ('a', 'b')``."""
    return "attributes.run_id IN (" + ", ".join(quote_value(n) for n in names) + ")"


class ChangeSchedule:
    """The search state of one wait (see the module docstring).

    ``tag`` None: the batch has no tag, so searches go by run id.
    """

    def __init__(
        self,
        *,
        tag: str | None,
        interval: float = DEFAULT_SEARCH_INTERVAL,
        page_size: int = DEFAULT_PAGE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if interval <= 0 or page_size < 1 or batch_size < 1:
            raise ValueError("a change schedule needs interval > 0, page and batch size >= 1")
        self.tag = tag
        self.interval = interval
        self.page_size = page_size
        self.batch_size = batch_size
        self.next_search = -math.inf
        self._watermark: dict[WorkspaceRef, int] = {}
        self._newest: dict[WorkspaceRef, int] = {}
        self._read_all: set[WorkspaceRef] = set()

    def plan(
        self,
        jobs: Iterable[JobState],
        experiments: Mapping[str, str],
        tag_values: Mapping[str, str],
        now: float,
    ) -> list[RunSearch]:
        """The searches due at ``now`` (none before :attr:`next_search`, which a due call
        moves on by ``interval`` even when it has nothing to search).

        ``jobs``: the wait's jobs; ``experiments`` and ``tag_values``: each job's
        experiment and batch-tag value by name, as ARM last showed them (a job missing
        from ``experiments`` is not searched for).
        """
        if now < self.next_search:
            return []
        self.next_search = now + self.interval
        pending: dict[WorkspaceRef, list[JobState]] = {}
        for job in jobs:
            if not job.finished and job.name in experiments:
                pending.setdefault(job.ref.workspace, []).append(job)
        searches: list[RunSearch] = []
        for workspace, waiting in pending.items():
            if self.tag is not None:
                searches.extend(self._by_tag(workspace, waiting, experiments, tag_values))
            else:
                searches.extend(self._by_run_id(workspace, waiting, experiments))
        return searches

    def _by_tag(
        self,
        workspace: WorkspaceRef,
        jobs: list[JobState],
        experiments: Mapping[str, str],
        tag_values: Mapping[str, str],
    ) -> list[RunSearch]:
        assert self.tag is not None
        by_value: dict[str, set[str]] = {}
        for job in jobs:
            value = tag_values.get(job.name)
            if value is not None:
                by_value.setdefault(value, set()).add(experiments[job.name])
        return [
            RunSearch(
                workspace,
                tuple(sorted(names)),
                tag_filter(self.tag, value),
                self.page_size,
                order_by=("end_time DESC",),
                by_tag=True,
            )
            for value, names in sorted(by_value.items())
        ]

    def _by_run_id(
        self, workspace: WorkspaceRef, jobs: list[JobState], experiments: Mapping[str, str]
    ) -> list[RunSearch]:
        searches = []
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            names = tuple(sorted({experiments[job.name] for job in chunk}))
            ids = [job.name for job in chunk]
            searches.append(RunSearch(workspace, names, run_id_filter(ids), len(ids)))
        return searches

    def take(
        self,
        search: RunSearch,
        runs: Sequence[SeenRun],
        next_page_token: str | None,
        jobs: Mapping[str, JobState],
    ) -> SearchResult:
        """Read one answer to ``search``; ``jobs``: the wait's jobs in its workspace by
        name (runs of other jobs are ignored)."""
        ended = tuple(
            run.run_id
            for run in runs
            if run.status in MLFLOW_ENDED and run.run_id in jobs and not jobs[run.run_id].finished
        )
        if not search.by_tag:
            return SearchResult(ended, None)
        return SearchResult(ended, self._next_page(search, runs, next_page_token))

    def _next_page(
        self, search: RunSearch, runs: Sequence[SeenRun], token: str | None
    ) -> RunSearch | None:
        workspace = search.workspace
        ends = [run.end_time for run in runs]
        newest = max((end for end in ends if end is not None), default=None)
        if newest is not None:
            self._newest[workspace] = max(self._newest.get(workspace, newest), newest)
        if None in ends and any(end is not None for end in ends[ends.index(None) :]):
            self._read_all.add(workspace)  # not MLflow's order: never stop early here
        stop = token is None
        if not stop and workspace not in self._read_all:
            floor = self._watermark.get(workspace)
            stop = None in ends or (
                floor is not None and any(e is not None and e < floor - OVERLAP_MS for e in ends)
            )
        if stop:
            if workspace in self._newest:
                self._watermark[workspace] = self._newest[workspace]
            return None
        return RunSearch(
            workspace,
            search.experiments,
            search.filter,
            search.max_results,
            order_by=search.order_by,
            page_token=token,
            by_tag=True,
        )
