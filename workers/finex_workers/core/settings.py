"""One typed settings object per process, read from the environment once at start.

A bad value fails fast with a message naming the variable and the allowed range, so a typo in a
Deployment's env shows up in the pod's log on start and not as odd behaviour hours later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from finex_workers.core.names import QUEUE_NAMES
from finex_workers.core.urls import (
    POSTGRES_SCHEMES,
    REDIS_SCHEMES,
    redact,
    url_problem,
    with_params,
)

N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """A setting is missing, malformed or outside its allowed range."""


#: Per-queue concurrency defaults from the runbook.
DEFAULT_CONCURRENCY: Mapping[str, int] = {"matrix": 5, "growth": 10, "probability": 10}
MAX_CONCURRENCY = 64


def env_number(env: Mapping[str, str], name: str, default: N, lo: N, hi: N) -> N:
    """The variable as a number of default's type, within lo..hi; unset or blank is default.

    A bad value raises SettingsError naming the variable and the allowed range. The operator's
    settings use it too, so every process reports bad configuration the same way.
    """
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r} is not {what} (allowed: {lo}..{hi})") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is out of range (allowed: {lo}..{hi})")
    return value


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    return env_number(env, name, default, lo, hi)


def service_url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    """The variable's URL, or default; a URL no client could use raises SettingsError naming
    the variable and the password-redacted URL, before anything tries to connect."""
    raw = env.get(name)
    url = default if raw is None or raw.strip() == "" else raw.strip()
    problem = url_problem(url, schemes)
    if problem:
        raise SettingsError(f"{name}={redact(url)} {problem}")
    return url


def _intervals(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r} must be comma-separated seconds, e.g. '5,30,120'"
        ) from None
    if not values or any(v < 0 or v > 86400 for v in values):
        raise SettingsError(f"{name}={raw!r}: each interval must be 0..86400 seconds")
    return values


@dataclass(frozen=True)
class Settings:
    """Everything a worker, the CLI or the exporter needs to know about its environment."""

    #: Where the queues live.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Where results are written. Opened only inside job processes, after fork.
    database_url: str = "postgresql://postgres@127.0.0.1:5432/finex"
    #: Worker processes per queue; each holds at most one PostgreSQL connection.
    concurrency: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CONCURRENCY))
    #: PostgreSQL connections the whole fleet may use (mindful of max_connections).
    pg_connection_budget: int = 40
    #: Attempts after the first failure before a job is dead-lettered.
    retry_max: int = 3
    #: Backoff between retries, in seconds; the last value repeats.
    retry_intervals: tuple[int, ...] = (5, 30, 120)
    #: A job running longer than this is killed and counts as failed.
    job_timeout: int = 600
    #: How long a dead-lettered job stays in the DLQ before Redis expires it.
    dlq_ttl: int = 30 * 86400
    #: A worker whose heartbeat is older than this is considered dead.
    worker_ttl: int = 60
    #: Crashes (its worker killed or gone while it ran) after which a job is quarantined in the
    #: DLQ, not retried by dlq.autoRetry. A crash uses no ordinary attempt. 0: crash accounting
    #: off (a crash then uses an attempt, as an ordinary failure, and is not counted).
    max_crashes: int = 3
    #: Assets per matrix job when fanning out a full recompute.
    matrix_chunk: int = 500
    #: Milliseconds between PostgreSQL's checks that a worker is still connected while its
    #: query runs (``client_connection_check_interval``, sent as a startup ``options``): a
    #: SIGKILLed worker's backend then rolls back and releases its locks within this time.
    #: 0 sends no option: PgBouncer (unless it lists ``options`` in its
    #: ignore_startup_parameters) and PostgreSQL 13 and older refuse the login with it.
    pg_connection_check_ms: int = 2000
    #: Times one job may go back to its queue because of an outage, attempts intact; past
    #: that, an outage costs an attempt like any failure (a flapping or misjudged service
    #: cannot keep a job looping).
    outage_returns_max: int = 10
    #: Let psycopg prepare a statement a connection runs often (after 5 runs). Off (0) for
    #: PgBouncer older than 1.21 in transaction pooling, which hands a client's next
    #: transaction to another server connection, where that prepared statement is unknown.
    pg_prepared_statements: bool = True

    @property
    def worker_database_url(self) -> str:
        """DATABASE_URL with the parameters every worker connection sends, checks included:
        one string, so a check answers for exactly what the jobs' connections send."""
        params = {"application_name": "finex-worker", "connect_timeout": "5"}
        if self.pg_connection_check_ms:
            params["options"] = f"-c client_connection_check_interval={self.pg_connection_check_ms}"
        return with_params(self.database_url, params)

    def connections_needed(self, queues: Sequence[str] = QUEUE_NAMES) -> int:
        """PostgreSQL connections these queues' workers open at full concurrency (one each)."""
        return sum(self.concurrency[q] for q in queues)

    def check_budget(self, queues: Sequence[str] = QUEUE_NAMES) -> None:
        """Refuse to start workers for queues that would need more connections than allowed.

        `finex workers start` counts the queues it runs, so a Pod that runs one queue (one
        Deployment per queue in Kubernetes) is checked against its own share.
        """
        needed = self.connections_needed(queues)
        if needed > self.pg_connection_budget:
            parts = " + ".join(f"{q} {self.concurrency[q]}" for q in queues)
            raise SettingsError(
                f"the workers need {needed} PostgreSQL connections ({parts}) but "
                f"FINEX_PG_CONNECTION_BUDGET is {self.pg_connection_budget}; lower the "
                f"*_WORKER_CONCURRENCY values or raise the budget (and max_connections)"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Parse and validate the process environment (or a given mapping, for tests).

        Each default is the field's default above, written once; only the variable's name and
        its allowed range are added here.
        """
        env = os.environ if env is None else env
        concurrency: dict[str, int] = {
            q: _int(
                env, f"{q.upper()}_WORKER_CONCURRENCY", DEFAULT_CONCURRENCY[q], 1, MAX_CONCURRENCY
            )
            for q in QUEUE_NAMES
        }
        return cls(
            redis_url=service_url(env, "REDIS_URL", cls.redis_url, REDIS_SCHEMES),
            database_url=service_url(env, "DATABASE_URL", cls.database_url, POSTGRES_SCHEMES),
            concurrency=concurrency,
            pg_connection_budget=_int(
                env, "FINEX_PG_CONNECTION_BUDGET", cls.pg_connection_budget, 1, 10000
            ),
            retry_max=_int(env, "FINEX_RETRY_MAX", cls.retry_max, 0, 100),
            retry_intervals=_intervals(env, "FINEX_RETRY_INTERVALS", cls.retry_intervals),
            job_timeout=_int(env, "FINEX_JOB_TIMEOUT", cls.job_timeout, 1, 86400),
            dlq_ttl=_int(env, "FINEX_DLQ_TTL", cls.dlq_ttl, 60, 365 * 86400),
            worker_ttl=_int(env, "FINEX_WORKER_TTL", cls.worker_ttl, 5, 3600),
            max_crashes=_int(env, "FINEX_MAX_CRASHES", cls.max_crashes, 0, 1000),
            matrix_chunk=_int(env, "FINEX_MATRIX_CHUNK", cls.matrix_chunk, 1, 100000),
            pg_connection_check_ms=_int(
                env, "FINEX_PG_CONNECTION_CHECK_MS", cls.pg_connection_check_ms, 0, 600000
            ),
            outage_returns_max=_int(
                env, "FINEX_OUTAGE_RETURNS_MAX", cls.outage_returns_max, 0, 1000
            ),
            pg_prepared_statements=bool(
                _int(env, "FINEX_PG_PREPARED_STATEMENTS", int(cls.pg_prepared_statements), 0, 1)
            ),
        )
