"""Finex worker fleet: RQ queues on Redis that compute risk figures into PostgreSQL."""

__version__ = "0.2.0"
