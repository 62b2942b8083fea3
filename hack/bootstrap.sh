#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, and nothing twice:
#   - Debian packages: redis-server, redis-sentinel, postgresql, pgbouncer (the database-outage
#     tests), prometheus (for promtool and the e2e alert check), and for the real node and its
#     image: mmdebstrap, umoci, containerd, runc, containernetworking-plugins (bridge,
#     host-local, loopback) and iproute2
#   - a virtualenv in .venv with the project installed editable plus its dev tools, at the
#     versions of requirements-dev.lock, with pip checking every file's hash
# Safe to run again: every step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*"; }

need_pkgs=()
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
# Sentinel: the Redis failover tests (tests/chaos) run two redis-servers and sentinels on loopback.
command -v redis-sentinel >/dev/null 2>&1 || need_pkgs+=(redis-sentinel)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need_pkgs+=(postgresql)
fi
# PgBouncer: the database-outage tests put it in front of the test PostgreSQL (tests/conftest.py).
command -v pgbouncer >/dev/null 2>&1 || need_pkgs+=(pgbouncer)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3 python3-venv)
command -v mmdebstrap >/dev/null 2>&1 || need_pkgs+=(mmdebstrap)
command -v umoci >/dev/null 2>&1 || need_pkgs+=(umoci)
command -v containerd >/dev/null 2>&1 || need_pkgs+=(containerd)
command -v runc >/dev/null 2>&1 || need_pkgs+=(runc)
[ -x /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)

if ((${#need_pkgs[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        sudo_cmd=(sudo)
    else
        sudo_cmd=()
    fi
    say "installing Debian packages: ${need_pkgs[*]}"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        "${need_pkgs[@]}" >/dev/null
fi

# Debian's packages may start their own services; ours run on private ports, so that is harmless.
stamp=.venv/.finex-installed
if [ ! -x .venv/bin/python ]; then
    say "creating virtualenv .venv"
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-dev.lock -nt "$stamp" ]; then
    # The locked versions only, each file checked against its hash (make lock writes the lock;
    # make lint fails when it is stale). Then the project itself, editable, with nothing more to
    # fetch: its build backend (setuptools) is in the lock too.
    say "installing Python dependencies into .venv from requirements-dev.lock (hashes checked)"
    .venv/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.lock
    .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
    touch "$stamp"
fi
say "ready"
