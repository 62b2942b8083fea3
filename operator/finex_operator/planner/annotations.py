"""The annotations a user sets on a pool to ask for an action, and how their values read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

#: A new value starts one safe restart (docs/operator.md, "Safe restart").
RESTART_ANNOTATION: Final = "finex.io/restart"
#: A new value retries the whole DLQ of the queues it names, parked jobs included.
RETRY_DLQ_ANNOTATION: Final = "finex.io/retry-dlq"


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
