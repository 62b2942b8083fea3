"""Which of a queue's Pods a restart or a removal still waits for.

A Pod being deleted has metadata.deletionTimestamp: the moment its grace period ends. By then the
kubelet has killed its containers and the Pod object goes within seconds. One still there well
after that is held by something that will not end by waiting: its node is lost (no kubelet
reports it gone) or a finalizer holds the object. Its worker process is dead or unreachable, so
it does not hold a restart's Stopping (the stuck-job sweep recovers any job it had).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from finex_operator.planner.model import Observed, PodView

#: How long after its grace a Pod may take to disappear before it is taken for stuck.
POD_GONE_SLACK_SECONDS: Final = 30


def past_grace(obs: Observed, pod: PodView) -> bool:
    """The Pod is being deleted and its grace ended more than the slack ago."""
    if not pod.terminating or pod.deletion_deadline is None:
        return False
    return obs.now >= pod.deletion_deadline + timedelta(seconds=POD_GONE_SLACK_SECONDS)


def pods_left(obs: Observed, queue: str) -> tuple[int, list[str]]:
    """Pods of the queue still worth waiting for, and the names of those stuck past their grace.

    Without Pod views (a snapshot built by hand) the plain count is used.
    """
    views = obs.pod_views.get(queue)
    if views is None:
        return obs.pods.get(queue, 0), []
    stuck = [p.name for p in views if past_grace(obs, p)]
    return len(views) - len(stuck), stuck
