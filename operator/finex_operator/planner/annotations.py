"""The annotations a user sets on a pool to ask for an action, and how their values read.

Every other `finex.io/` annotation on a pool is either kopf's own bookkeeping (the operator sets
kopf's progress and diff-base storage prefix to finex.io, see handlers.startup) or unknown: most
likely a typo such as `finex.io/restarts`, which would otherwise be ignored in silence.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Final

from finex_workers.core.names import QUEUE_NAMES

#: A new value starts one safe restart (docs/operator.md, "Safe restart").
RESTART_ANNOTATION: Final = "finex.io/restart"
#: A new value aborts the running restart (docs/operator.md, "Deadlines and abort").
ABORT_RESTART_ANNOTATION: Final = "finex.io/abort-restart"
#: A new value retries the whole DLQ of the queues it names, parked jobs included.
RETRY_DLQ_ANNOTATION: Final = "finex.io/retry-dlq"
#: The annotations a user may set.
USER_ANNOTATIONS: Final = (RESTART_ANNOTATION, ABORT_RESTART_ANNOTATION, RETRY_DLQ_ANNOTATION)

PREFIX: Final = "finex.io/"
#: kopf's own names under the finex.io/ prefix: its managed marker, the diff base, the touch key
#: of its progress storage.
KOPF_NAMES: Final = frozenset({"kopf-managed", "last-handled-configuration", "touch-dummy"})
#: kopf stores each handler's progress under finex.io/<handler id>, the function's name; these
#: are the handlers of finex_operator.handlers that keep progress (tests/unit/test_planner.py
#: checks the list), and "tick", the per-pool timer of earlier releases, whose annotation pools
#: created then still carry.
LEGACY_HANDLER_IDS: Final = frozenset({"tick"})
KOPF_HANDLER_IDS: Final = frozenset({"changed"}) | LEGACY_HANDLER_IDS


def is_kopf_bookkeeping(key: str) -> bool:
    """Whether a finex.io/ annotation is one kopf writes for itself."""
    name = key.removeprefix(PREFIX)
    return name in KOPF_NAMES or name.split(".", 1)[0] in KOPF_HANDLER_IDS


def unknown_annotations(annotations: Mapping[str, str]) -> list[str]:
    """The pool's finex.io/ annotation keys that are neither a user's nor kopf's, sorted."""
    return sorted(
        key
        for key in annotations
        if key.startswith(PREFIX) and key not in USER_ANNOTATIONS and not is_kopf_bookkeeping(key)
    )


def unknown_annotation_message(key: str) -> str:
    """What the Warning Event says about one unknown annotation: the closest known one, if any."""
    known = [k.removeprefix(PREFIX) for k in USER_ANNOTATIONS]  # compared without the prefix
    close = difflib.get_close_matches(key.removeprefix(PREFIX), known, n=1, cutoff=0.6)
    hint = f"did you mean {PREFIX}{close[0]}? " if close else ""
    return (
        f"annotation {key} is not one the operator knows and does nothing; {hint}"
        f"the pool's annotations are {', '.join(USER_ANNOTATIONS)}"
    )


def describe_target(value: str) -> str:
    """Why a value names the queues it does, for the Event that starts the action."""
    if "@" in value:
        return "the queues before '@'"
    named = [n.strip() for n in value.split(",")]
    if all(n in QUEUE_NAMES for n in named):
        # "matrix" alone reads as one queue, but without '@' it is a nonce like any other.
        return f"no '@': all queues (for {value} only, write {value}@<nonce>)"
    return "no '@': all queues"


def parse_target(value: str, pool_queues: Sequence[str]) -> tuple[list[str], str]:
    """Queues named by an annotation value, and an error ("" if fine).

    `<queue>[,<queue>...]@<nonce>` names queues; any value without '@' means all of the pool's
    queues (a timestamp is the usual choice).
    """
    if "@" not in value:
        return list(pool_queues), ""
    names_part = value.split("@", 1)[0]
    names = [n.strip() for n in names_part.split(",") if n.strip()]
    unknown = [n for n in names if n not in pool_queues]
    if not names or unknown:
        return [], (
            f"value {value!r} names {', '.join(unknown) or 'no queue'}; this pool's queues are "
            f"{', '.join(pool_queues)} (syntax: <queue>[,<queue>]@<nonce>, or no '@' for all)"
        )
    return [q for q in pool_queues if q in names], ""
