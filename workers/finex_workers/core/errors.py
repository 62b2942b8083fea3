"""Exceptions the domain raises, sorted by what the worker runtime should do next.

A :class:`PayloadError` means the job can never succeed as written (an id that does not exist,
too little data, a value outside its domain). Retrying cannot help, so the runtime sends the job
to the dead-letter queue at once and keeps going. Anything else (a lost connection, a
serialization failure) is not a ``FinexError`` and follows the retry policy.

Every class here survives pickling with its message intact, because RQ may serialise the
exception when it records a failed job.
"""

from __future__ import annotations

from collections.abc import Iterable


class FinexError(Exception):
    """Root of every error this project raises on purpose."""


class PayloadError(FinexError, ValueError):
    """Bad job payload; never retried.

    It is also a ``ValueError``, so callers that only know the standard library still catch it
    as "this input is wrong".
    """


class UnknownIdError(PayloadError):
    """An id in the payload names no row; the message names the field and every missing id."""

    def __init__(self, field: str, ids: Iterable[int]) -> None:
        self.field = field
        self.ids = sorted(ids)
        super().__init__(f"unknown {field}(s): {self.ids}")

    def __reduce__(self) -> tuple[type[UnknownIdError], tuple[str, list[int]]]:
        # The default reduction would call cls(message) and fail on the two-argument __init__.
        return (type(self), (self.field, self.ids))


class InsufficientDataError(PayloadError):
    """Too few observations to compute a figure (for example growth from under 3 prices)."""


class InvalidValueError(PayloadError):
    """A value outside its mathematical domain: a non-positive price or likelihood ratio, a
    prior outside (0, 1), a non-finite number, a duplicated date."""


class AlreadySeededError(FinexError):
    """Demo seeding refused because the database already holds assets.

    Seeding twice would mix two data sets; ``finex seed --replace`` (``replace=True``) wipes the
    domain tables first.
    """


class ServiceUnreachableError(FinexError):
    """Redis or PostgreSQL did not answer at the configured URL.

    A configuration or network problem, not a bug: the ``finex`` command prints the message as
    one line (no traceback) and exits 3. The URL is already password-redacted.
    """

    def __init__(self, service: str, variable: str, url: str, reason: str) -> None:
        self.service = service
        self.variable = variable
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach {service} at {variable}={url}: {reason}")

    def __reduce__(self) -> tuple[type[ServiceUnreachableError], tuple[str, str, str, str]]:
        return (type(self), (self.service, self.variable, self.url, self.reason))


class ServiceRefusedError(ServiceUnreachableError):
    """The service answered at the configured URL and refused the login or a parameter.

    A configuration error, not an outage: waiting will not fix it, a change of configuration
    will. ``hint`` names what to change. It is a ServiceUnreachableError (the service cannot
    be used), so every path that reports those in one line reports this one too.
    """

    def __init__(self, service: str, variable: str, url: str, reason: str, hint: str = "") -> None:
        super().__init__(service, variable, url, reason)
        self.hint = hint
        message = f"{service} at {variable}={url} refused the worker's login: {reason}"
        self.args = (f"{message}; {hint}" if hint else message,)

    def __reduce__(  # type: ignore[override]
        self,
    ) -> tuple[type[ServiceRefusedError], tuple[str, str, str, str, str]]:
        return (type(self), (self.service, self.variable, self.url, self.reason, self.hint))
