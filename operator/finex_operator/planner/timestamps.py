"""Times as status writes them: RFC 3339 in UTC to the second, the CRD's `date-time`."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    """`2026-01-01T12:00:00Z`: what every status timestamp looks like."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> datetime | None:
    """A status timestamp back as an aware datetime; None when absent or not a timestamp.

    Tolerant on purpose: a status written by an older operator (or by hand) must not stop the
    reconcile; a phase with no start time counts from now.
    """
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
