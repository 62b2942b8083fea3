"""Connections and storage plumbing: Redis and PostgreSQL clients, migrations, RQ's key names,
and process checks. Imports only :mod:`finex_workers.core`."""
