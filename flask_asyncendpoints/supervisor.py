"""The processes of ``flask asyncendpoints worker``: one worker process, or a supervisor of several.

By default the command is one worker process: :func:`serve` starts the worker, waits for a stop
signal and shuts the worker down. With ``--processes N`` it becomes a :class:`Supervisor`, which
starts N children, restarts any that dies, passes stop signals on and exits once they have stopped.
The multi-process layout follows gunicorn's and Dramatiq's arbiters: one parent that only watches,
children that do the work.

Each child is *spawned*: a fresh interpreter runs the same ``flask --app … asyncendpoints worker``
command line again (:func:`child_command`), told by :data:`CHILD_ENV` that it is a child. It is not
forked from the supervisor, because the supervisor has loaded the app, and loading an app may open
sockets (a database pool, a metrics exporter) or start threads (an error reporter) that a fork
would copy half-alive into every child. A spawned child loads the app on its own, exactly as a
single worker process does, at the cost of one app import per child start; a job worker shares no
listening socket with its siblings, so forking would save nothing else.

Both wait for signals on a :class:`~flask_asyncendpoints.signal_inbox.SignalInbox`, never acting
on one inside a Python signal handler.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
from flask.cli import ScriptInfo

from .signal_inbox import SignalInbox
from .worker import Worker

logger = logging.getLogger("flask_asyncendpoints")

#: Set by a supervisor in each child's environment: JSON ``{"supervisor": pid, "process": n,
#: "heartbeat": path}``. A process that finds it runs one worker for that supervisor.
CHILD_ENV = "ASYNCENDPOINTS_WORKER_PROCESS"

#: A worker whose maintenance thread has not looped for this long is reported unhealthy (seconds).
HEALTHY_WITHIN = 60.0

#: The supervisor gives up when its children crashed more than ``max(CRASH_LIMIT, processes)``
#: times within the last ``CRASH_WINDOW`` seconds.
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0
#: Seconds before a crashed child is started again; doubled for each crash of the same process
#: within ``CRASH_WINDOW``, up to ``MAX_RESTART_DELAY``.
RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 10.0
#: Seconds a child gets beyond ``SHUTDOWN_TIMEOUT`` (or, when told to stop at once, in all) to give
#: back its jobs and exit before the supervisor kills it.
STOP_GRACE = 5.0

#: Exit statuses of the supervisor.
EXIT_STOPPED = 0
EXIT_UNCLEAN = 1
EXIT_CRASHING = 3

#: ``ctx.meta`` key of the ``worker`` command's own arguments, as typed.
_RAW_ARGS = "flask_asyncendpoints.worker_args"

#: Stop now, without waiting for running jobs (not on Windows, which has no SIGQUIT).
_SIGQUIT: tuple[int, ...] = (signal.SIGQUIT,) if hasattr(signal, "SIGQUIT") else ()


# -- one worker process (alone or a supervisor's child) ----------------------------------------------


@dataclass(frozen=True)
class ChildInfo:
    """What a supervisor tells the child it started."""

    #: The supervisor's pid: the child stops when its parent is no longer that process.
    supervisor: int
    #: The child's number, 1 to N, kept by its replacements.
    process: int
    #: The file the child touches while its worker is healthy; the supervisor reads its age.
    heartbeat: Path


def child_info() -> ChildInfo | None:
    """The supervisor's word to this process, if a supervisor started it.

    Read once: it is removed from the environment, so a process this one starts is no child.
    """
    raw = os.environ.pop(CHILD_ENV, None)
    if raw is None:
        return None
    data = json.loads(raw)
    return ChildInfo(int(data["supervisor"]), int(data["process"]), Path(data["heartbeat"]))


def serve(worker: Worker, start: Callable[[], object], *, health_file: str | None, child: ChildInfo | None) -> None:
    """Run ``worker`` until ``SIGINT`` or ``SIGTERM``, then shut it down (``SHUTDOWN_TIMEOUT``).

    A second ``SIGINT``, or ``SIGQUIT``, cuts the shutdown short: the running jobs are given back
    at once. A child also stops when its supervisor is gone.

    :param worker: this process's worker, not started yet.
    :param start: starts it (after the signal handlers are in place).
    :param health_file: touched every few seconds while the worker is healthy, deleted at exit
        (ignored in a child: its supervisor owns that file).
    :param child: what the supervisor said, if this process is its child.
    """
    heartbeat = child.heartbeat if child is not None else None if health_file is None else Path(health_file)
    inbox = SignalInbox((signal.SIGINT, signal.SIGTERM, *_SIGQUIT))
    try:
        start()
        suffix = (
            "; Ctrl+C to stop"
            if child is None
            else f" as worker process {child.process} of supervisor {child.supervisor}"
        )
        click.echo(
            f"worker {worker.worker_id} running {worker.settings.max_concurrency} thread(s) on queues "
            f"{worker.queues.plan}{suffix}"
        )
        beat = max(1.0, min(5.0, worker.settings.poll_interval))
        stop = _StopRequest()
        while not stop.requested:
            stop.note(inbox.wait(beat))
            if stop.requested:
                break
            if child is not None and os.getppid() != child.supervisor:
                logger.warning(
                    "worker process %d: its supervisor (pid %d) is gone; stopping", child.process, child.supervisor
                )
                break
            if heartbeat is not None and time.time() - worker.heartbeat < HEALTHY_WITHIN:
                try:
                    heartbeat.touch()
                except OSError:
                    logger.warning("could not touch %s", heartbeat, exc_info=True)
        click.echo("stopping: waiting for running jobs")
        if stop.now:
            _stop_now(worker)
        finished = threading.Event()

        def shut_down() -> None:
            try:
                worker.shutdown()
            finally:
                finished.set()
                inbox.wake()

        # In a thread of its own, so that this thread stays free to hear a second SIGINT meanwhile.
        shutting_down = threading.Thread(target=shut_down, name="asyncendpoints-shutdown", daemon=True)
        shutting_down.start()
        while not finished.is_set():
            hurried = stop.now
            stop.note(inbox.wait(1.0))
            if stop.now and not hurried:
                _stop_now(worker)
        shutting_down.join()
    finally:
        inbox.close()
        if child is None and heartbeat is not None:
            heartbeat.unlink(missing_ok=True)


def _stop_now(worker: Worker) -> None:
    click.echo("stopping now: giving back the running jobs")
    worker.stop_waiting()


class _StopRequest:
    """The stop signals seen so far: the first ``SIGINT`` or a ``SIGTERM`` asks for a graceful
    stop, a second ``SIGINT`` or a ``SIGQUIT`` for one at once."""

    def __init__(self) -> None:
        self.interrupts = 0
        self.requested = False
        self.now = False

    def note(self, received: Iterable[int]) -> None:
        for signum in received:
            if signum == signal.SIGINT:
                self.interrupts += 1
                self.requested = True
                self.now = self.now or self.interrupts >= 2
            elif signum == signal.SIGTERM:
                self.requested = True
            elif signum in _SIGQUIT:
                self.requested = self.now = True


# -- the supervisor ------------------------------------------------------------------------------------


class WorkerCommand(click.Command):
    """A command that keeps the arguments it was given, so a supervisor can run it again as typed."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_RAW_ARGS] = list(args)
        return super().parse_args(ctx, args)


def child_command(ctx: click.Context) -> list[str]:
    """The command line that runs this ``worker`` command again: the same app, command and options.

    ``python -m flask --app <import path>`` (or without ``--app`` when Flask found ``app.py`` or
    ``wsgi.py`` by itself), the command's names, then its own arguments as they were typed.

    :param ctx: the ``worker`` command's context (its command a :class:`WorkerCommand`).
    :raises click.UsageError: the app came from a custom CLI's ``create_app``, which a new
        ``python -m flask`` cannot find.
    """
    info = ctx.find_object(ScriptInfo)
    app_args: list[str] = []
    if info is not None and info.app_import_path:
        app_args = ["--app", info.app_import_path]
    elif info is not None and info.create_app is not None:
        raise click.UsageError(
            "--processes starts each worker process with 'python -m flask --app …', which cannot find an "
            "app made by this command's own create_app: give the app with --app or FLASK_APP."
        )
    names: list[str] = []
    command: click.Context | None = ctx
    while command is not None and command.parent is not None:
        names.insert(0, command.info_name or "")
        command = command.parent
    return [sys.executable, "-m", "flask", *app_args, *names, *ctx.meta[_RAW_ARGS]]


class CrashHistory:
    """The children's recent crashes: how long to wait before a restart, and when to give up.

    :param limit: the most crashes allowed within ``window``; one more and the supervisor gives up.
    :param window: seconds a crash is remembered.
    """

    def __init__(self, limit: int, window: float = CRASH_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._crashes: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return len(self._crashes)

    def record(self, process: int, now: float) -> float | None:
        """Note a crash of worker process ``process``; seconds to wait before it starts again, or
        ``None`` if that was one crash too many.

        :param now: a ``time.monotonic()`` reading.
        """
        self._crashes = [(at, p) for at, p in self._crashes if now - at < self.window]
        self._crashes.append((now, process))
        if len(self._crashes) > self.limit:
            return None
        own = sum(1 for _, p in self._crashes if p == process)
        return min(MAX_RESTART_DELAY, RESTART_DELAY * 2.0 ** (own - 1))


def describe_exit(returncode: int) -> str:
    """``exited with status 1`` or ``was killed by SIGKILL``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


@dataclass(eq=False)
class _Child:
    process: int
    popen: subprocess.Popen[bytes]
    heartbeat: Path
    #: The strongest stop signal sent to it: 0 none, 1 graceful, 2 at once.
    told: int = 0
    killed: bool = False

    @property
    def name(self) -> str:
        return f"worker process {self.process} (pid {self.popen.pid})"


class Supervisor:
    """Runs ``processes`` children, each running ``command``; restarts those that die; stops them on a signal.

    ``SIGTERM`` or ``SIGINT``: a graceful stop; each child gets ``SIGTERM``, finishes its running
    jobs for up to ``shutdown_timeout`` seconds and gives back the rest; a child still running
    :data:`STOP_GRACE` seconds after that is killed. A second ``SIGINT``, or ``SIGQUIT``: each
    child gets ``SIGQUIT`` and gives back its running jobs at once. A third ``SIGINT`` kills them.

    A child that exits on its own is a crash: it is started again after a back-off
    (:class:`CrashHistory`); after too many crashes the supervisor stops the others and gives up.

    :param command: the child's command line (see :func:`child_command`).
    :param processes: how many children run at a time.
    :param shutdown_timeout: the children's ``SHUTDOWN_TIMEOUT``.
    :param health_file: touched while every child runs and reports itself healthy; deleted at exit.
    :param env: the children's environment (default: this process's).
    """

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        shutdown_timeout: float,
        health_file: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.processes = processes
        self.shutdown_timeout = shutdown_timeout
        self.health_file = None if health_file is None else Path(health_file)
        self.env = env
        self.crashes = CrashHistory(max(CRASH_LIMIT, processes))
        self.pid = os.getpid()
        self._children: list[_Child] = []
        #: Worker process number -> ``time.monotonic()`` when it is due to start again.
        self._restarts: dict[int, float] = {}
        self._interrupts = 0
        self._told = 0
        self._kill_at = float("inf")
        self._gave_up: str | None = None
        self._unclean: list[str] = []
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def run(self) -> int:
        """Supervise until the children have stopped; the exit status (:data:`EXIT_STOPPED`,
        :data:`EXIT_UNCLEAN` or :data:`EXIT_CRASHING`). Main thread only."""
        inbox = SignalInbox((signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, *_SIGQUIT))
        self._dir = directory = tempfile.TemporaryDirectory(prefix="asyncendpoints-supervisor-")
        try:
            for process in range(1, self.processes + 1):
                self._start(process)
            click.echo(f"supervisor {self.pid} running {self.processes} worker processes; Ctrl+C to stop")
            while self._children or (self._restarts and not self._told):
                for signum in inbox.wait(self._timeout()):
                    self._on_signal(signum)
                self._reap()
                now = time.monotonic()
                if self._told:
                    if now >= self._kill_at:
                        self._kill_all(f"did not stop within {self.shutdown_timeout + STOP_GRACE:g} s")
                else:
                    self._restart_due(now)
                    self._beat()
        finally:
            if self._children:  # only after an error in the loop above
                self._kill_all("was left running by the supervisor's own error")
                for child in self._children:
                    child.popen.wait()
            inbox.close()
            if self.health_file is not None:
                self.health_file.unlink(missing_ok=True)
            directory.cleanup()
        return self._outcome()

    def _outcome(self) -> int:
        if self._gave_up is not None:
            click.echo(f"Error: {self._gave_up}", err=True)
            return EXIT_CRASHING
        if self._unclean:
            click.echo(f"Error: {'; '.join(self._unclean)}.", err=True)
            return EXIT_UNCLEAN
        logger.info("supervisor %d stopped: every worker process gave back its jobs", self.pid)
        return EXIT_STOPPED

    def _timeout(self) -> float:
        due = min([*self._restarts.values(), self._kill_at, time.monotonic() + 1.0])
        return max(0.0, due - time.monotonic())

    def _start(self, process: int) -> None:
        assert self._dir is not None
        heartbeat = Path(self._dir.name) / f"process-{process}.alive"
        heartbeat.touch()  # fresh until the child's first beat
        env = dict(os.environ if self.env is None else self.env)
        env[CHILD_ENV] = json.dumps({"supervisor": self.pid, "process": process, "heartbeat": str(heartbeat)})
        popen = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL)
        child = _Child(process, popen, heartbeat)
        self._children.append(child)
        logger.info("worker process %d started: pid %d", process, popen.pid)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts >= 3:
                self._kill_all("was killed on a third SIGINT")
            else:
                self._stop(now=self._interrupts == 2, why="SIGINT received")
        elif signum == signal.SIGTERM:
            self._stop(now=False, why="SIGTERM received")
        elif signum in _SIGQUIT:
            self._stop(now=True, why="SIGQUIT received")

    def _stop(self, *, now: bool, why: str) -> None:
        """Tell every child to stop: gracefully, or (``now``) giving back its running jobs at once."""
        level = 2 if now else 1
        if level <= self._told:
            return
        self._told = level
        self._restarts.clear()
        if now:
            logger.info("supervisor %d (%s): worker processes give back their running jobs now", self.pid, why)
            self._kill_at = min(self._kill_at, time.monotonic() + STOP_GRACE)
        elif self._children:
            logger.info(
                "supervisor %d (%s): stopping %d worker process(es); running jobs get %g s to finish",
                self.pid,
                why,
                len(self._children),
                self.shutdown_timeout,
            )
        if not now:
            self._kill_at = time.monotonic() + self.shutdown_timeout + STOP_GRACE
        for child in self._children:
            self._tell(child, level)

    def _tell(self, child: _Child, level: int) -> None:
        if child.told >= level or child.popen.poll() is not None:
            return
        child.told = level
        child.popen.send_signal(signal.SIGQUIT if level == 2 and _SIGQUIT else signal.SIGTERM)

    def _kill_all(self, why: str) -> None:
        for child in self._children:
            if child.popen.poll() is None and not child.killed:
                child.killed = True
                child.told = max(child.told, 1)
                logger.warning("%s %s: killed; its jobs are recovered when their leases expire", child.name, why)
                child.popen.kill()
        self._told = max(self._told, 1)
        self._restarts.clear()
        self._kill_at = float("inf")

    def _reap(self) -> None:
        for child in list(self._children):
            returncode = child.popen.poll()
            if returncode is None:
                continue
            self._children.remove(child)
            child.heartbeat.unlink(missing_ok=True)
            how = describe_exit(returncode)
            if child.told:
                # Killed by the stop signal itself: it was still loading the app and held no job.
                stopped_by_signal = returncode in (-signal.SIGTERM, -signal.SIGINT, *(-s for s in _SIGQUIT))
                if not child.killed and (returncode == 0 or stopped_by_signal):
                    logger.info("%s stopped", child.name)
                else:
                    logger.warning("%s %s while stopping", child.name, how)
                    self._unclean.append(f"{child.name} {how} while stopping")
                continue
            delay = self.crashes.record(child.process, time.monotonic())
            if delay is None:
                self._gave_up = (
                    f"worker processes crashed {len(self.crashes)} times within {self.crashes.window:g} s "
                    f"(the last: {child.name} {how}); stopped the others. The crashes' output above says why: "
                    "fix the cause and start the worker again."
                )
                logger.error("%s %s: too many crashes; giving up", child.name, how)
                self._stop(now=False, why="too many crashes")
            else:
                logger.warning("%s %s; starting it again in %.1f s", child.name, how, delay)
                self._restarts[child.process] = time.monotonic() + delay

    def _restart_due(self, now: float) -> None:
        for process, due in sorted(self._restarts.items()):
            if due <= now:
                del self._restarts[process]
                self._start(process)

    def _beat(self) -> None:
        """Touch the health file while every child runs and has touched its heartbeat lately."""
        if self.health_file is None or len(self._children) < self.processes:
            return
        now = time.time()
        try:
            fresh = all(now - child.heartbeat.stat().st_mtime < HEALTHY_WITHIN for child in self._children)
        except FileNotFoundError:
            fresh = False
        if fresh:
            self.health_file.touch()
