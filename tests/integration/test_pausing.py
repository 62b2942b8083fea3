"""Pauses with holders, against a real Redis: each party lifts only the pause it took.

The operator's restart, its spec.paused, the CLI's pause and the CLI's restart each hold a queue
paused under their own name (control.Holder); the queue runs again only when nobody holds it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from finex_workers import control
from finex_workers.cli.restart import restart_queue
from finex_workers.core.names import QUEUE_NAMES
from finex_workers.infra.redisconn import redis_from_url
from finex_workers.observability.metrics import exporter_registry

R = control.Holder.OPERATOR_RESTART


def test_a_queue_stays_paused_until_every_holder_lifted_its_own(redis_conn: redis.Redis) -> None:
    assert control.pause(redis_conn, "growth", by=R)
    assert control.pause(redis_conn, "growth", by=control.Holder.CLI)
    assert not control.pause(redis_conn, "growth", by=R)  # already held by R
    assert set(control.holds(redis_conn, "growth")) == {R, "cli"}
    assert control.release(redis_conn, "growth", by=R)
    assert control.is_paused(redis_conn, "growth")  # the CLI's pause stays
    assert not control.release(redis_conn, "growth", by=R)
    assert control.release(redis_conn, "growth", by=control.Holder.CLI)
    assert not control.is_paused(redis_conn, "growth")  # the last hold took the key with it
    assert control.holds(redis_conn, "growth") == {}


def test_resume_by_hand_lifts_every_hold(redis_conn: redis.Redis) -> None:
    control.pause(redis_conn, "matrix", by=R)
    control.pause(redis_conn, "matrix", by=control.Holder.OPERATOR_SPEC)
    assert control.resume(redis_conn, "matrix")
    assert not control.is_paused(redis_conn, "matrix")


def test_a_pause_written_before_holders_is_read_and_kept(redis_conn: redis.Redis) -> None:
    redis_conn.set("finex:paused:matrix", "finex-operator at 2026-01-01T12:00:00+00:00")
    assert control.holds(redis_conn, "matrix") == {
        "finex-operator": datetime(2026, 1, 1, 12, tzinfo=UTC)
    }
    assert control.pause(redis_conn, "matrix", by="cli")
    assert set(control.holds(redis_conn, "matrix")) == {"finex-operator", "cli"}
    assert control.release(redis_conn, "matrix", by=control.Holder.LEGACY_OPERATOR)
    assert control.paused_by(
        redis_conn,
        "matrix",
    ).startswith("cli at ")  # type: ignore[union-attr]


def test_queue_state_says_who_holds_the_pause_and_for_how_long(redis_conn: redis.Redis) -> None:
    then = (datetime.now(UTC) - timedelta(seconds=90)).isoformat(timespec="seconds")
    redis_conn.hset("finex:paused:probability", mapping={"cli": then})
    control.pause(redis_conn, "probability", by=R)
    state = control.queue_state(redis_conn, "probability")
    assert state.paused
    assert state.holds == tuple(sorted(("cli", R)))
    assert 89 <= state.paused_seconds < 120  # since the oldest hold
    idle = control.queue_state(redis_conn, "matrix")
    assert (idle.holds, idle.paused_seconds) == ((), 0.0)


def test_the_exporter_reports_the_pause_age_whoever_paused(redis_url, redis_conn) -> None:
    registry = exporter_registry(lambda: redis_from_url(redis_url), QUEUE_NAMES)
    then = (datetime.now(UTC) - timedelta(seconds=3700)).isoformat(timespec="seconds")
    redis_conn.hset("finex:paused:growth", mapping={control.Holder.OPERATOR_SPEC: then})
    age = registry.get_sample_value("finex_queue_paused_seconds", {"queue": "growth"})
    assert age is not None
    assert 3700 <= age < 3800
    assert registry.get_sample_value("finex_queue_paused_seconds", {"queue": "matrix"}) == 0


def test_the_cli_restart_keeps_a_pause_taken_while_it_ran(redis_conn: redis.Redis) -> None:
    """Someone pauses the queue while `finex workers restart` drains it: it stays paused."""
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if line.startswith("drained"):
            control.pause(redis_conn, "growth", by=control.Holder.CLI)

    report = restart_queue(
        redis_conn, "growth", drain_timeout=5, stop_timeout=5, start_timeout=0, say=say
    )
    assert not report.was_paused
    assert control.is_paused(redis_conn, "growth"), said
    assert set(control.holds(redis_conn, "growth")) == {"cli"}
    assert report.resumed is False
