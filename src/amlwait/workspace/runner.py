"""The real workspace's compute: command jobs run as local processes.

Every ``tick_seconds`` (0.1 s) the runner thread moves jobs along::

    NotStarted → Queued → Starting → Running → Finalizing → Completed | Failed
                   (waits for one of ``max_concurrent`` slots, like a cluster's nodes)
    any of these → CancelRequested → Canceled   (the process group is killed)

A job's run directory is ``DIR/runs/{sub}/{rg}/{ws}/{name}/`` (``RUN``). When a slot is
free, :mod:`~.runtime` prepares the run as Azure ML's runtime would (code folder copied to
``RUN/code/``, inputs and outputs substituted into the command, output folders created,
``AZURE_ML_*`` variables set); a job that cannot be prepared fails with the reason as its
error, also appended to its log. Then ``/bin/sh -c COMMAND`` runs in ``RUN/code/`` (or
``RUN`` without code), stdout and stderr appended to ``RUN/user_logs/std_log.txt``. It
gets its own session (process group), so a cancel kills everything it started: SIGTERM,
then SIGKILL after ``KILL_GRACE_SECONDS`` if any process of the group is left; the job is
Canceled once the group is gone (or SIGKILL was sent). When a job's command ends, whatever it left
running in its group is killed, as a container's teardown would.

A pipeline job runs nothing itself: its steps are command jobs like any other (queued,
admitted under ``max_concurrent``, run, canceled), and each tick its status follows theirs
(:func:`amlwait.core.pipeline.derive_pipeline_status`); a cancel of the pipeline reaches
its steps through the same cancel path.

Surviving a restart: the command runs under a tiny ``sh`` wrapper that writes the
command's exit code to ``EXIT_CODE_FILE`` in the run directory, and the wrapper's pid
(the process group id) is stored; everything else was decided and done before the start.
A new runner on the same data dir watches the pids of jobs that were running; when one is
gone it reads the exit-code file (no file: Failed, "ended without recording an exit
code"). Queued and NotStarted jobs are simply picked up, and a job caught half-prepared
(Starting, no pid) is queued again and prepared afresh.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amlwait.core.jobs import JobRef
from amlwait.core.pipeline import derive_pipeline_status
from amlwait.core.status import TERMINAL, JobStatus
from amlwait.workspace import webhooks
from amlwait.workspace.pipelines import continue_on_step_failure
from amlwait.workspace.runtime import (
    JobSetupError,
    RunPlan,
    plan_run,
    prepare_run,
    run_directory,
    runs_root,
)
from amlwait.workspace.store import JobStore, StoredJob

logger = logging.getLogger(__name__)

LOG_FILE = Path("user_logs") / "std_log.txt"
STDERR_FILE = ".amlwait-stderr"
EXIT_CODE_FILE = ".amlwait-exit-code"
KILL_GRACE_SECONDS = 2.0
REASON_LINES = 5
REASON_CHARS = 1000
_STDERR_TAIL_BYTES = 16 * 1024

# $1 = the job's command, $2 = its run directory, $3 = where the command runs. The command's
# stdout goes to the log (fd 3); its stderr goes through tee, into the log too and into
# STDERR_FILE, whose last lines become the failure reason. The exit code lands in a file by
# an atomic rename (its time is when the command ended), so a reader never sees half of it.
_WRAPPER = (
    'cd -- "$3" || exit 127; '
    "exec 3>&1; "
    '{ /bin/sh -c "$1" 2>&1 1>&3 3>&-; code=$?; '
    f'printf "%s\\n" "$code" > "$2/{EXIT_CODE_FILE}.tmp"; '
    f'mv -f "$2/{EXIT_CODE_FILE}.tmp" "$2/{EXIT_CODE_FILE}"; '
    f'}} | tee -a "$2/{STDERR_FILE}"; '
    f'exit "$(cat "$2/{EXIT_CODE_FILE}" 2>/dev/null || echo 1)"'
)

_ACTIVE = (JobStatus.STARTING.value, JobStatus.RUNNING.value)
CANCELING = JobStatus.CANCEL_REQUESTED.value

STOPPED_MESSAGE = "The local workspace was stopped while the job ran."
NO_EXIT_CODE_MESSAGE = (
    "The job's process ended without recording an exit code (it was killed, or the "
    "workspace lost track of it)."
)


@dataclass
class _Process:
    seq: int
    ref: JobRef
    pid: int
    run_dir: Path
    kill_sent_at: float | None = None
    killed: bool = False


class Runner:
    def __init__(
        self,
        store: JobStore,
        data_dir: Path,
        *,
        max_concurrent: int = 2,
        tick_seconds: float = 0.1,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, not {max_concurrent}")
        self.store = store
        self.data_dir = Path(data_dir)
        self.runs_root = runs_root(self.data_dir)
        self.max_concurrent = max_concurrent
        self.tick_seconds = tick_seconds
        self._processes: dict[int, _Process] = {}
        self._webhooks = webhooks.WebhookSender()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_dir(self, ref: JobRef) -> Path:
        return run_directory(self.runs_root, ref)

    def start(self) -> None:
        self._recover()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="amlwait-runner", daemon=True)
        self._thread.start()

    def stop(self, *, kill_jobs: bool) -> None:
        """Stop ticking; with ``kill_jobs`` kill running jobs (they become Canceled)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._webhooks.close()
        if not kill_jobs:
            self._processes.clear()
            return
        processes = list(self._processes.values())
        self._processes.clear()
        for process in processes:
            _signal_group(process.pid, signal.SIGTERM)
        _wait_for(
            lambda: not any(_is_running(p.pid) or _group_alive(p.pid) for p in processes),
            KILL_GRACE_SECONDS,
        )
        for process in processes:
            _signal_group(process.pid, signal.SIGKILL)
        _wait_for(lambda: not any(_is_running(p.pid) for p in processes), 1.0)
        for job in self.store.jobs_in((*_ACTIVE, JobStatus.CANCEL_REQUESTED.value)):
            if job.pid is not None:
                self.store.transition(
                    job.seq, (job.status,), JobStatus.CANCELED.value, error=STOPPED_MESSAGE
                )

    def tick(self) -> None:
        """One round of progress; the thread calls it, tests may too."""
        self._watch()
        self._finalize()
        self._follow_pipelines()
        self._notify()
        self._cancel()
        self._queue()
        self._admit()

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("the local workspace runner failed a tick; it keeps going")
            self._stop.wait(self.tick_seconds)

    def _recover(self) -> None:
        """Take over the jobs a previous runner on this data dir left behind."""
        for job in self.store.jobs_in((*_ACTIVE, JobStatus.CANCEL_REQUESTED.value)):
            if job.pid is not None:
                self._processes[job.seq] = _Process(
                    job.seq, job.ref, job.pid, self.run_dir(job.ref)
                )
            elif job.status == JobStatus.STARTING.value:
                self.store.transition(job.seq, (job.status,), JobStatus.QUEUED.value)
            elif job.status == JobStatus.RUNNING.value:
                self.store.transition(
                    job.seq, (job.status,), JobStatus.FINALIZING.value, error=NO_EXIT_CODE_MESSAGE
                )

    def _watch(self) -> None:
        for seq, process in list(self._processes.items()):
            running = _is_running(process.pid)
            # Starting → Running even for a command that already ended, so a job shows
            # every status of the progression for at least one tick.
            if self.store.transition(seq, (JobStatus.STARTING.value,), JobStatus.RUNNING.value):
                continue
            if running:
                continue
            if (
                process.kill_sent_at is not None
                and not process.killed
                and _group_alive(process.pid)
            ):
                continue  # the leader is gone, others ignore SIGTERM: _cancel sends SIGKILL
            # Like a container's teardown: nothing the job started outlives it.
            _signal_group(process.pid, signal.SIGKILL)
            del self._processes[seq]
            if self.store.status_of(seq) == JobStatus.CANCEL_REQUESTED.value:
                self.store.transition(
                    seq, (JobStatus.CANCEL_REQUESTED.value,), JobStatus.CANCELED.value
                )
                continue
            exit_code = _read_exit_code(process.run_dir)
            if exit_code is None:
                error: str | None = NO_EXIT_CODE_MESSAGE
                code: str | None = "SystemError"
            elif exit_code != 0:
                error, code = failure_reason(exit_code, process.run_dir), "UserError"
            else:
                error = code = None
            self.store.transition(
                seq,
                _ACTIVE,
                JobStatus.FINALIZING.value,
                exit_code=exit_code,
                error=error,
                error_code=code,
                ended_at=_ended_at(process.run_dir, self.store.now()),
            )

    def _finalize(self) -> None:
        for job in self.store.jobs_in((JobStatus.FINALIZING.value,)):
            succeeded = job.exit_code == 0 and job.error is None
            final = JobStatus.COMPLETED if succeeded else JobStatus.FAILED
            self.store.transition(
                job.seq, (JobStatus.FINALIZING.value,), final.value, ended_at=job.ended_at
            )

    def _follow_pipelines(self) -> None:
        """Each open pipeline's status from its steps (:func:`derive_pipeline_status`); a
        cancel (the pipeline's, or a failed step without ``continue_on_step_failure``)
        is passed on to every step that has not ended."""
        open_statuses = [s.value for s in JobStatus if s.value not in TERMINAL]
        for pipeline in self.store.pipelines_in(open_statuses):
            children = self.store.children_of(pipeline.ref)
            step = derive_pipeline_status(
                pipeline.status,
                [child.status for child in children],
                continue_on_step_failure=continue_on_step_failure(pipeline.properties),
            )
            if step.cancel_children:
                for child in children:
                    if child.status not in TERMINAL and child.status != CANCELING:
                        self.store.cancel_job(child.ref)
            if step.status == pipeline.status:
                continue
            started = self.store.now() if pipeline.started_at is None else None
            self.store.transition(
                pipeline.seq,
                (pipeline.status,),
                step.status,
                error=step.error,
                error_code="UserError" if step.error else None,
                started_at=started,
            )

    def _notify(self) -> None:
        """Send the TaskCompleted of every ended job's Azure DevOps webhook (:mod:`~.webhooks`)."""
        now = self.store.now()
        for job, name, webhook, attempts in self.store.pending_webhooks(now):
            outcome, done = self._webhooks.deliver(webhook, job.status, attempts + 1)
            if not done:
                logger.warning(
                    "the webhook %s of job %s: %s (attempt %d of %d)",
                    name, job.ref.name, outcome, attempts + 1, webhooks.MAX_ATTEMPTS,
                )  # fmt: skip
            self.store.record_webhook(
                job.seq,
                name,
                attempts=attempts + 1,
                done=done or attempts + 1 >= webhooks.MAX_ATTEMPTS,
                outcome=outcome,
                next_at=now + webhooks.RETRY_SECONDS,
            )

    def _cancel(self) -> None:
        now = time.monotonic()
        for job in self.store.jobs_in((JobStatus.CANCEL_REQUESTED.value,)):
            process = self._processes.get(job.seq)
            if process is None:
                self.store.transition(
                    job.seq, (JobStatus.CANCEL_REQUESTED.value,), JobStatus.CANCELED.value
                )
            elif process.kill_sent_at is None:
                _signal_group(process.pid, signal.SIGTERM)
                process.kill_sent_at = now
            elif now - process.kill_sent_at > KILL_GRACE_SECONDS and not process.killed:
                _signal_group(process.pid, signal.SIGKILL)
                process.killed = True

    def _queue(self) -> None:
        for job in self.store.jobs_in((JobStatus.NOT_STARTED.value,)):
            self.store.transition(job.seq, (JobStatus.NOT_STARTED.value,), JobStatus.QUEUED.value)

    def _admit(self) -> None:
        free = self.max_concurrent - len(self._processes)
        if free <= 0:
            return
        for job in self.store.jobs_in((JobStatus.QUEUED.value,))[:free]:
            if self.store.transition(job.seq, (JobStatus.QUEUED.value,), JobStatus.STARTING.value):
                self._launch(job)

    def _launch(self, job: StoredJob) -> None:
        run_dir = self.run_dir(job.ref)
        try:
            plan = plan_run(job.ref.name, job.properties, run_dir)
            prepare_run(plan, keep_out=self.data_dir)
            started_at = self.store.now()
            pid = _spawn(plan)
        except JobSetupError as exc:
            self._fail_start(job, run_dir, str(exc))
            return
        except OSError as exc:
            self._fail_start(job, run_dir, f"The local workspace could not start the job: {exc}.")
            return
        self._processes[job.seq] = _Process(job.seq, job.ref, pid, run_dir)
        self.store.transition(
            job.seq,
            (JobStatus.STARTING.value,),
            JobStatus.STARTING.value,
            pid=pid,
            started_at=started_at,
        )

    def _fail_start(self, job: StoredJob, run_dir: Path, message: str) -> None:
        with contextlib.suppress(OSError):  # the log is a courtesy; the job's error is the record
            (run_dir / LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
            with (run_dir / LOG_FILE).open("a", encoding="utf-8") as log:
                log.write(f"amlwait local workspace: {message}\n")
        self.store.transition(
            job.seq, (JobStatus.STARTING.value,), JobStatus.FAILED.value, error=message
        )


def _spawn(plan: RunPlan) -> int:
    run_dir = plan.run_dir
    (run_dir / LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
    for stale in (
        run_dir / EXIT_CODE_FILE,
        run_dir / f"{EXIT_CODE_FILE}.tmp",
        run_dir / STDERR_FILE,
    ):
        stale.unlink(missing_ok=True)
    env = {**os.environ, **plan.environment}
    argv = ["/bin/sh", "-c", _WRAPPER, "amlwait-job", plan.command, str(run_dir), str(plan.cwd)]
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (
            os.POSIX_SPAWN_OPEN,
            1,
            str(run_dir / LOG_FILE),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o644,
        ),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        return os.posix_spawn(argv[0], argv, env, file_actions=file_actions, setsid=True)
    except NotImplementedError:  # no POSIX_SPAWN_SETSID: a new process group does as well
        return os.posix_spawn(argv[0], argv, env, file_actions=file_actions, setpgroup=0)


def _is_running(pid: int) -> bool:
    """Whether the job whose group leader is ``pid`` still runs; reaps it if it is our child."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # started by an earlier process on this data dir
    else:
        return reaped == 0
    if _PROC.is_dir():
        stat = _proc_stat(_PROC / str(pid) / "stat")
        # A recycled pid would not lead its own process group.
        return stat is not None and stat[0] not in _DEAD and stat[2] == pid
    try:
        os.kill(pid, 0)
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def _group_alive(pgid: int) -> bool:
    """Whether any live process is in group ``pgid`` (zombies, which nobody may reap, not)."""
    if _PROC.is_dir():
        for entry in _PROC.iterdir():
            if entry.name.isdigit():
                stat = _proc_stat(entry / "stat")
                if stat is not None and stat[2] == pgid and stat[0] not in _DEAD:
                    return True
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# Linux's /proc/PID/stat: "pid (comm) state ppid pgrp ...". Zombies and dead processes
# hold no resources and are ignored: a container's init may never reap them.
_PROC = Path("/proc")
_DEAD = frozenset({"Z", "X", "x"})


def _proc_stat(path: Path) -> tuple[str, int, int] | None:
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[2])
    except (OSError, IndexError, ValueError):
        return None


def _wait_for(done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def failure_reason(exit_code: int, run_dir: Path) -> str:
    """Why a command failed, as Azure ML words it, with the last lines of its stderr."""
    message = (
        f"Execution failed. User process exited with status code {exit_code}. "
        f"Please check log file '{LOG_FILE.as_posix()}' for error details."
    )
    tail = stderr_tail(run_dir)
    return f"{message} Error: {tail}" if tail else message


def stderr_tail(run_dir: Path) -> str:
    """The last ``REASON_LINES`` non-blank lines the command wrote to stderr, joined by
    newlines, at most ``REASON_CHARS`` characters (the end kept); ``""`` when none."""
    try:
        with (run_dir / STDERR_FILE).open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - _STDERR_TAIL_BYTES))
            text = file.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-REASON_LINES:])[-REASON_CHARS:]


def _ended_at(run_dir: Path, fallback: float) -> float:
    """When the command ended: the exit-code file's time, else ``fallback``."""
    try:
        return min((run_dir / EXIT_CODE_FILE).stat().st_mtime, fallback)
    except OSError:
        return fallback


def _read_exit_code(run_dir: Path) -> int | None:
    try:
        return int((run_dir / EXIT_CODE_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
