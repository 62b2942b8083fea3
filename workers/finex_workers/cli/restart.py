"""``finex workers restart``: the runbook's safe restart as one verb, queue by queue.

The steps are the runbook's, each through the same ``finex_workers.control`` function the
operator's restart uses: pause, wait for the active jobs to drain, ask the live workers to stop,
wait until they have exited, wait for their replacements, resume.

This command does not start processes: on another host it cannot, and in Kubernetes the
Deployment does. What starts the replacements is whatever supervises the workers: the kubelet
(the worker container's supervisor exits when its last worker has, and is restarted), or, on
one machine, ``finex workers start --respawn-stopped`` (what ``make dev`` runs). Without such a
supervisor the queue is resumed with no workers, and the verb says so and exits 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from finex_workers import control

Say = Callable[[str], None]


@dataclass
class RestartReport:
    """What ``restart`` did to one queue (the ``--json`` fields, docs/cli.md)."""

    queue: str
    #: The queue was paused by someone else before the restart began; it is left paused.
    was_paused: bool = False
    #: Active jobs when the drain began.
    active_at_pause: int = 0
    drained: bool = False
    #: Workers asked to stop, and registered workers nobody listens for (dead).
    stopped: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    #: Live workers after the restart that were not there before.
    replacements: list[str] = field(default_factory=list)
    resumed: bool = False
    #: done, drain-timeout, stop-timeout, no-replacements
    outcome: str = "done"

    @property
    def ok(self) -> bool:
        return self.outcome == "done"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _live_names(conn: redis.Redis, queue: str) -> set[str]:
    return {w.name for w in control.live_workers(conn, queue)}


def _wait(
    what: Callable[[], tuple[bool, str]], timeout: float, say: Say, poll: float = 0.5
) -> bool:
    """Poll what() until it reports done or timeout passes; say its status when it changes."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        done, status = what()
        if status != last:
            say(status)
            last = status
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def restart_queue(
    conn: redis.Redis,
    queue: str,
    *,
    drain_timeout: float,
    stop_timeout: float,
    start_timeout: float,
    say: Say,
) -> RestartReport:
    """Run the safe restart on one queue; its pause is lifted whatever the outcome.

    The restart pauses under its own holder name and lifts only that, so a pause someone else
    holds (taken before or during the restart) keeps the queue paused: the operator's restart
    does the same (control.pausing).
    """
    report = RestartReport(queue)
    report.was_paused = control.is_paused(conn, queue)
    control.pause(conn, queue, by=control.Holder.CLI_RESTART)
    say("paused" if not report.was_paused else "was already paused (will stay paused)")
    try:
        report.active_at_pause = control.active_jobs(conn, queue)

        def drained() -> tuple[bool, str]:
            n = control.active_jobs(conn, queue)
            return n == 0, f"draining: {n} active job(s)" if n else "drained: no active job"

        report.drained = _wait(drained, drain_timeout, say)
        if not report.drained:
            report.outcome = "drain-timeout"
            say(f"active jobs did not finish within {drain_timeout:.0f}s; not stopping workers")
            return report
        before = _live_names(conn, queue)
        stop = control.stop_workers(conn, queue)
        report.stopped, report.unreachable = stop.asked, stop.unreachable
        say(f"asked {len(stop.asked)} worker(s) to stop")
        if stop.unreachable:
            say(
                f"{len(stop.unreachable)} registered worker(s) are not listening (dead): "
                + ", ".join(stop.unreachable)
            )
        asked = set(stop.asked)

        def gone() -> tuple[bool, str]:
            left = asked & _live_names(conn, queue)
            return not left, f"waiting for {len(left)} worker(s) to exit" if left else "stopped"

        if not _wait(gone, stop_timeout, say):
            report.outcome = "stop-timeout"
            return report
        if not asked or start_timeout <= 0:
            return report

        def replaced() -> tuple[bool, str]:
            new = _live_names(conn, queue) - before
            report.replacements = sorted(new)
            if len(new) >= len(asked):
                return True, f"{len(new)} new worker(s) live"
            return False, f"waiting for new workers: {len(new)}/{len(asked)} live"

        if not _wait(replaced, start_timeout, say) and not report.replacements:
            report.outcome = "no-replacements"
            say(
                f"no new worker within {start_timeout:.0f}s: nothing restarts them here; run "
                "`finex workers start` (or `--respawn-stopped`, as make dev does)"
            )
        return report
    finally:
        control.release(conn, queue, by=control.Holder.CLI_RESTART)
        report.resumed = not control.is_paused(conn, queue)
        others = control.paused_by(conn, queue)
        say("resumed" if report.resumed else f"left paused: still held by {others}")
