"""Run `finex exporter` as a real subprocess, and read any /metrics endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client.parser import text_string_to_metric_families

from finex_workers.dev.localservices import free_port, port_open
from tests.support.fleet import ROOT
from tests.support.waiting import wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, timeout: float = 5.0) -> Samples:
    """Every sample at url, keyed by (name, labels)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@contextmanager
def running_exporter(redis_url: str) -> Iterator[str]:
    """`finex exporter` on a free loopback port; yields its /metrics URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "finex_workers.cli",
            "exporter",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            "the exporter to listen",
            lambda: proc.poll() is not None or port_open("127.0.0.1", port),
        )
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
