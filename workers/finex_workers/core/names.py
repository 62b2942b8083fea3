"""The three queues' names: the one list every layer (and the operator's CRD checks) uses."""

from __future__ import annotations

from typing import Final, Literal

QueueName = Literal["matrix", "growth", "probability"]
QUEUE_NAMES: Final[tuple[QueueName, ...]] = ("matrix", "growth", "probability")


def check_queue_name(name: str) -> QueueName:
    """Return name as a QueueName, or raise ValueError listing the known queues."""
    for known in QUEUE_NAMES:
        if name == known:
            return known
    raise ValueError(f"unknown queue {name!r}; known queues: {', '.join(QUEUE_NAMES)}")
