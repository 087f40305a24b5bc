"""The MLflow read path of ``amlwait wait``: read only what changed, ARM stays the truth.

``--read-path``:

- ``arm``: every read is ARM (a paged LIST per workspace with a
  tag, GETs without), and progress shows every status change.
- ``mlflow``: every ``SEARCH_SHARE`` x ``--poll-interval`` seconds (20 s by default) one
  small MLflow ``runs/search`` per workspace (with a tag: the batch's runs that ended
  since the last search; without: the unfinished jobs by run id, ``BATCH_SIZE`` a
  request; see :mod:`amlwait.core.changes`). Each job a search says ended is *woken*: the
  engine reads it by one ARM GET before it reports anything (or lists the batch when many
  woke at once, as for Event Grid events). ARM reads everything else on a slow safety
  net: a tagged batch is listed every ``SAFETY_SHARE`` x ``--max-poll-interval`` (30 min
  by default); without a tag each unfinished job is read by GET every
  ``SAFETY_SHARE_PER_JOB`` x ``--max-poll-interval`` (1 h). The first read of every
  job is ARM (it names the job's experiment, which MLflow searches within). A workspace
  without a tracking URI is bad input (exit 2); a search that is refused or keeps
  failing ends the wait as an Azure ML failure.
- ``auto`` (the default of ``amlwait wait``): ``mlflow`` when every workspace advertises
  a tracking URI and the first search answers within ``FIRST_SEARCH_SECONDS``;
  otherwise ``arm``, with a one-line note saying why. A search that keeps failing later
  also leaves ``auto`` on ARM alone (one note), never ends the wait. A one-shot check
  (``--timeout 0``) reads ARM directly: a search could only add requests to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from amlwait.azureml.arm import ArmJobSource
from amlwait.azureml.tracking import MlflowSearches
from amlwait.core.changes import DEFAULT_BATCH_SIZE, DEFAULT_SEARCH_INTERVAL, ChangeSchedule
from amlwait.core.jobs import JobRef, JobSnapshot, WorkspaceRef
from amlwait.core.policy import PollPolicy
from amlwait.core.source import JobResubmitter, JobSource, RunReader
from amlwait.errors import AmlwaitError, InputError
from amlwait.throttle import DeadlineReached, read_deadline

if TYPE_CHECKING:
    from amlwait.core.clock import Clock
    from amlwait.events import Listener
    from amlwait.waiter import Waiter, WaitOptions

READ_PATHS = ("auto", "arm", "mlflow")
BATCH_SIZE = DEFAULT_BATCH_SIZE
# The search interval is the poll interval times this (15 s -> 20 s): one search costs one
# request whatever the batch's size, and 20 s keeps the p95 detection under the naive
# loop's quarter (see docs/read-path.md).
SEARCH_SHARE = DEFAULT_SEARCH_INTERVAL / 15.0
# The ARM safety net runs at this multiple of the slowest poll interval: with a tag the
# batch is listed every 30 min (2 min x 15); without, each unfinished job is read by GET
# every hour (2 min x 30: per job, so less often; MLflow's status of every unfinished run
# is read at each search anyway).
SAFETY_SHARE = 15.0
SAFETY_SHARE_PER_JOB = 30.0
# How long ``auto`` gives the workspace check and the first search (retries included)
# before it reads ARM alone: one ARM request's time limit, so a search that hangs or keeps
# failing delays the wait's ARM reads by at most this much once.
FIRST_SEARCH_SECONDS = 30.0


def safety_policy(policy: PollPolicy, *, tagged: bool) -> PollPolicy:
    """``policy`` with ARM reads slowed to the safety net: the batch's listing every
    ``SAFETY_SHARE * max_poll_interval`` seconds (``tagged``), else every job by GET every
    ``SAFETY_SHARE_PER_JOB * max_poll_interval`` seconds."""
    share = SAFETY_SHARE if tagged else SAFETY_SHARE_PER_JOB
    interval = share * policy.max_poll_interval
    return replace(policy, poll_interval=interval, max_poll_interval=interval)


class MlflowChanges:
    """Wakes the jobs MLflow says ended; see the module docstring.

    ``mode`` is ``mlflow`` or ``auto``; ``note`` is told, in one line, when ``auto``
    falls back to ARM. ``arm_policy``: the wait's own polling policy, restored then.
    """

    def __init__(
        self,
        runs: MlflowSearches,
        *,
        tag: str | None,
        mode: str,
        arm_policy: PollPolicy,
        note: Callable[[str], None],
        interval: float = DEFAULT_SEARCH_INTERVAL,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.runs = runs
        self.tag = tag
        self.mode = mode
        self.arm_policy = arm_policy
        self.note = note
        self.schedule = ChangeSchedule(tag=tag, interval=interval, batch_size=batch_size)
        self.active = True
        self.checked = False
        self.answered = False
        self.searches = 0
        self.experiments: dict[str, str] = {}
        self.tag_values: dict[str, str] = {}

    # -- what ARM shows ------------------------------------------------------------------

    def saw(self, snapshot: JobSnapshot) -> None:
        """Remember a job's experiment and batch-tag value from an ARM read."""
        # A job that names no experiment runs in Azure ML's "Default" one.
        self.experiments[snapshot.name] = snapshot.experiment or "Default"
        if self.tag is not None and self.tag in snapshot.tags:
            self.tag_values[snapshot.name] = snapshot.tags[self.tag]

    def wrap(self, source: JobSource) -> JobSource:
        """``source``, telling this feed what each ARM read shows."""
        return RecordingSource(source, self)

    # -- the engine's side -----------------------------------------------------------------

    @property
    def next_due(self) -> float:
        """When the next search is due (``inf``: none can be made yet, or MLflow is off)."""
        if not self.active or not self.experiments:
            return math.inf
        return self.schedule.next_search

    async def check(self, workspaces: Sequence[WorkspaceRef]) -> bool:
        """Whether every workspace advertises a tracking URI (``mlflow``: raise if not)."""
        for workspace in workspaces:
            try:
                uri = await self.runs.tracking_uri(workspace)
            except AmlwaitError as error:
                return self._off(f"its resource could not be read ({error})")
            if uri is None:
                if self.mode == "mlflow":
                    raise InputError(
                        f"--read-path mlflow: workspace {workspace} advertises no MLflow "
                        "tracking URI (mlFlowTrackingUri); use --read-path arm"
                    )
                return self._off(f"workspace {workspace} advertises no MLflow tracking URI")
        return True

    def _off(self, why: str) -> bool:
        self.active = False
        self.note(f"amlwait: reading ARM only (--read-path auto): {why}")
        return False

    def _probe_limit(self, now: float) -> float | None:
        """The read deadline ``auto`` gives the check and the first search:
        ``FIRST_SEARCH_SECONDS`` from ``now``; None when that is not sooner than the
        wait's own (then running out of time is the wait's deadline, not MLflow's)."""
        if self.mode != "auto" or self.answered:
            return None
        limit = now + FIRST_SEARCH_SECONDS
        return limit if limit < read_deadline.get() else None

    async def poll(self, waiter: Waiter) -> None:
        """Send the searches due now and wake the jobs they say ended. The first call
        checks the workspaces' tracking URIs (``auto`` falls back to ARM's policy)."""
        jobs = waiter.tracker.jobs
        if not self.checked:
            self.checked = True
            workspaces = sorted({ref.workspace for ref in jobs})
            probe = self._probe_limit(waiter.clock.now())
            limited = read_deadline.set(read_deadline.get() if probe is None else probe)
            try:
                usable = await self.check(workspaces)
            except DeadlineReached:
                if probe is None:
                    raise
                usable = self._off(
                    f"its resource did not answer within {FIRST_SEARCH_SECONDS:.0f} s"
                )
            finally:
                read_deadline.reset(limited)
            if not usable:
                waiter.use_policy(self.arm_policy)
                return
        if self.next_due > waiter.clock.now():
            return
        searches = self.schedule.plan(
            jobs.values(), self.experiments, self.tag_values, waiter.clock.now()
        )
        names: dict[WorkspaceRef, set[str]] = {}
        for ref in jobs:
            names.setdefault(ref.workspace, set()).add(ref.name)
        # A tagged batch is read in at most its size in pages (plus one) per search,
        # whatever the server answers.
        page_bound = len(jobs) // self.schedule.page_size + 2
        # A search is retried a bounded number of times (RetryPolicy.attempts), not until
        # the wait's deadline: when MLflow keeps failing, ARM alone goes on. ``auto``'s
        # first search is bounded by time instead (FIRST_SEARCH_SECONDS, or the wait's
        # deadline when that comes first).
        probing = self.mode == "auto" and not self.answered
        probe = self._probe_limit(waiter.clock.now())
        limit = read_deadline.get() if probing else math.inf
        bounded = read_deadline.set(limit if probe is None else probe)
        try:
            for search in searches:
                page = search
                for _ in range(page_bound):
                    runs, token = await self.runs.search(page)
                    self.searches += 1
                    known = names[page.workspace]
                    ours = {
                        run.run_id: jobs[JobRef(page.workspace, run.run_id)]
                        for run in runs
                        if run.run_id in known
                    }
                    result = self.schedule.take(page, runs, token, ours)
                    now = waiter.clock.now()
                    for name in result.ended:
                        waiter.tracker.read_now(name, now)
                    if result.next_page is None:
                        break
                    page = result.next_page
        except (AmlwaitError, DeadlineReached) as error:
            read_deadline.reset(bounded)
            if self.mode == "mlflow" or (isinstance(error, DeadlineReached) and probe is None):
                raise  # mlflow: MLflow is required; else the wait's own deadline came
            if isinstance(error, DeadlineReached):
                self._off(f"the MLflow search did not answer within {FIRST_SEARCH_SECONDS:.0f} s")
            else:
                self._off(f"the MLflow search was refused ({error})")
            waiter.use_policy(self.arm_policy)
            waiter.tracker.read_all_by(waiter.clock.now())
            return
        read_deadline.reset(bounded)
        if searches:
            self.answered = True


class RecordingSource:
    """A job source that tells an :class:`MlflowChanges` what each ARM read shows."""

    def __init__(self, inner: JobSource, changes: MlflowChanges) -> None:
        self.inner = inner
        self.changes = changes

    @property
    def requests_sent(self) -> int:
        return self.inner.requests_sent

    async def get_job(self, ref: JobRef) -> JobSnapshot | None:
        snapshot = await self.inner.get_job(ref)
        if snapshot is not None:
            self.changes.saw(snapshot)
        return snapshot

    async def list_jobs_by_tag(self, workspace: WorkspaceRef, tag: str) -> list[JobSnapshot]:
        listing = await self.inner.list_jobs_by_tag(workspace, tag)
        for snapshot in listing:
            self.changes.saw(snapshot)
        return listing

    async def cancel_job(self, ref: JobRef) -> None:
        await self.inner.cancel_job(ref)

    def run_reader(self) -> RunReader | None:
        """The inner source's run reader (why jobs failed, when they ran), if it has one."""
        factory = getattr(self.inner, "run_reader", None)
        return None if factory is None else cast("RunReader", factory())

    async def resubmit_job(self, ref: JobRef, new_name: str) -> JobRef:
        if not hasattr(self.inner, "resubmit_job"):
            raise TypeError("this job source cannot resubmit jobs (--retries)")
        resubmitter: JobResubmitter = self.inner  # type: ignore[assignment]
        return await resubmitter.resubmit_job(ref, new_name)


def mlflow_changes(
    source: ArmJobSource,
    *,
    tag: str | None,
    mode: str,
    policy: PollPolicy,
    note: Callable[[str], None],
) -> MlflowChanges | None:
    """The change feed for ``--read-path mode`` (None for ``arm``); it searches every
    ``SEARCH_SHARE * policy.poll_interval`` seconds."""
    if mode not in READ_PATHS:
        raise InputError(f"--read-path {mode!r}: use one of {', '.join(READ_PATHS)}")
    if mode == "arm":
        return None
    interval = SEARCH_SHARE * policy.poll_interval
    return MlflowChanges(
        MlflowSearches(source), tag=tag, mode=mode, arm_policy=policy, note=note, interval=interval
    )


def mlflow_waiter(
    jobs: Sequence[JobRef],
    source: ArmJobSource,
    *,
    mode: str,
    note: Callable[[str], None],
    options: WaitOptions | None = None,
    tag: str | None = None,
    clock: Clock | None = None,
    listener: Listener | None = None,
    on_retry: Callable[[list[JobRef]], None] | None = None,
) -> Waiter:
    """A :class:`~amlwait.waiter.Waiter` reading by ``--read-path mode``: for ``auto`` and
    ``mlflow`` it polls ARM on the safety net (:func:`safety_policy`) and MLflow's
    searches wake the jobs that ended. ``auto`` with ``options.timeout`` 0 (read every
    job once) reads ARM only, silently: a search could only add requests to one read."""
    from amlwait.waiter import Waiter, WaitOptions

    options = options or WaitOptions()
    if mode == "auto" and options.timeout <= 0:
        mode = "arm"
    changes = mlflow_changes(source, tag=tag, mode=mode, policy=options.policy, note=note)
    if changes is None:
        return Waiter(
            jobs,
            source,
            options=options,
            clock=clock,
            tag=tag,
            listener=listener,
            on_retry=on_retry,
        )
    return Waiter(
        jobs,
        changes.wrap(source),
        options=replace(options, policy=safety_policy(options.policy, tagged=tag is not None)),
        clock=clock,
        tag=tag,
        listener=listener,
        on_retry=on_retry,
        changes=changes,
    )
