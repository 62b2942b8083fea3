"""Recovery from a worker container's death, as the kubelet reports it (issue 19).

The heartbeat sweep believes a worker dead only after ``FINEX_WORKER_TTL`` (60 s): on Pods a
SIGKILLed container got its job back after 91.5 s. The kubelet reports a container's death, and
its reason, within a second, in the Pod's ``containerStatuses``. For every Pod of a pool whose
``worker`` container terminated abnormally (OOMKilled, a signal, a non-zero exit), the jobs its
workers held go back at once, each as a crash with that reason and the Pod's name
(``control.clean_stuck_jobs`` with ``dead_worker``: the same atomic script as the sweep's, whose
ZREM is the claim, so a job is recovered once whoever comes first).

Which jobs: worker names carry the Pod's name (``<queue>.<pod>.<pid>-<suffix>``, see
``planner.deletion_cost.pod_of_worker``), so the dead container's are those of the prefix
``<queue>.<pod>.``, started before the container finished (the container the kubelet restarts
in its place reuses the prefix; its jobs started later). A container that exited 0 (the
supervisor's end after a stop) is no crash. A Pod deleted with its container still running (a
force deletion: the process may still run on its node) is left to the heartbeat backstop.

The parsing is pure (:func:`crashes_of`); :func:`recover_pod` does the Redis work; handlers.py
registers it on the pools' Pods.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from finex_operator import builders, cluster
from finex_operator.reasons import EventReason
from finex_operator.reconcile import Runtime
from finex_operator.spec import parse_spec
from finex_workers import control

log = logging.getLogger("finex.operator.podcrash")


@dataclass(frozen=True)
class ContainerCrash:
    """One abnormal termination of a Pod's worker container."""

    #: Unique per termination (Pod uid, container id, finish time): handled once.
    key: str
    pool: str
    queue: str
    crash: control.Crash


def _kind(terminated: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, what happened) of an abnormal termination, None for a clean exit."""
    code = int(terminated.get("exitCode") or 0)
    reason = str(terminated.get("reason") or "")
    if reason == "OOMKilled":
        return "oom", f"OOMKilled (exit code {code})"
    if code == 0:
        return None
    if code > 128 and code - 128 in {s.value for s in signal.Signals}:
        sig = signal.Signals(code - 128)
        return "signal", f"killed by {sig.name} ({sig.value}), exit code {code} ({reason})"
    return "exit", f"exit code {code} ({reason or 'Error'})"


def crashes_of(pod: Mapping[str, Any]) -> list[ContainerCrash]:
    """The abnormal terminations of the pool Pod's worker container: the current state when it
    is terminated, and the last state (the kubelet keeps the one before a restart)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    pool, queue = labels.get(builders.POOL_LABEL), labels.get(builders.QUEUE_LABEL)
    name = str(meta.get("name") or "")
    if not pool or not queue or not name:
        return []
    out = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != builders.CONTAINER:
            continue
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            terminated = state.get("terminated")
            if not terminated:
                continue
            judged = _kind(terminated)
            finished = str(terminated.get("finishedAt") or "")
            if judged is None or not finished:
                continue
            kind, what = judged
            # finishedAt has whole seconds: the death was within the second after it.
            before = datetime.fromisoformat(finished.replace("Z", "+00:00")).timestamp() + 1
            crash = control.Crash(
                kind,
                f"worker container of Pod {name} {what} at {finished}",
                worker=f"{queue}.{name}.",
                before=before,
            )
            key = f"{meta.get('uid')}/{terminated.get('containerID') or ''}/{finished}"
            out.append(ContainerCrash(key, str(pool), str(queue), crash))
    return out


def recover_pod(rt: Runtime, namespace: str, pod: Mapping[str, Any], seen: set[str]) -> int:
    """Recover the jobs of the Pod's dead worker container(s) at once; returns how many.

    ``seen``: termination keys already handled (a Pod's later events repeat its last state).
    Errors (Redis, the Secret) are logged: the sweep recovers the jobs later in any case.
    """
    todo = [c for c in crashes_of(pod) if c.key not in seen]
    recovered = 0
    for item in todo:
        body = cluster.get_pool(rt.api, namespace, item.pool)
        if body is None:
            seen.add(item.key)
            continue
        try:
            spec = parse_spec(body["spec"])
            url = cluster.secret_value(rt.api, namespace, spec.redis_url.name, spec.redis_url.key)
            report = control.clean_stuck_jobs(
                rt.redis_for(url),
                item.queue,
                max_crashes=spec.max_crashes,
                dead_worker=item.crash,
            )
        except (cluster.SecretError, redis.RedisError, ValueError, KeyError) as exc:
            log.warning("recovering the jobs of %s failed (the sweep will): %s", item.crash, exc)
            continue
        seen.add(item.key)
        done = report.requeued + report.dead_lettered
        recovered += len(done)
        if done:
            rt.post(
                body,
                "Warning",
                EventReason.WORKER_CRASH_RECOVERED,
                f"{item.queue}: {item.crash}; recovered at once: "
                + "; ".join(f"{j}: {report.reasons.get(j, '')}" for j in done[:5]),
            )
        if report.quarantined:
            rt.post(
                body,
                "Warning",
                EventReason.JOBS_QUARANTINED,
                f"{item.queue}: quarantined after {spec.max_crashes} crashes: "
                + ", ".join(report.quarantined[:5]),
            )
    return recovered
