"""A stopped real node leaves the host as it found it.

This module starts a real node of its own and stops it, so it must run while no other real node
runs (there is one per machine: a kubelet owns host-wide paths). OWN_REAL_NODE tells
tests/e2e/conftest.py to run it before anything that uses the session's real_node_cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support import cluster as k8s
from tests.support import realnode
from tests.support.k8s_fixtures import require_tools
from tests.support.waiting import wait_for

OWN_REAL_NODE = True


def host_snapshot() -> dict[str, Any]:
    """What the node could change on the host, outside its own directory."""
    snap: dict[str, Any] = {
        "sysctls": {k: Path("/proc/sys", k).read_text() for k in realnode.SYSCTLS},
        "paths": sorted(p for p in realnode.HOST_PATHS if os.path.lexists(p)),
        "interfaces": sorted(os.listdir("/sys/class/net")),
        "mounts": sorted(
            line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        ),
        "cgroups": sorted(
            str(d) for d in Path("/sys/fs/cgroup").glob(f"*/{realnode.KUBEPODS}") if d.is_dir()
        ),
    }
    if shutil.which("iptables-save"):
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
        snap["iptables"] = [
            line for line in rules.stdout.splitlines() if line[:1] in ("-", ":", "*")
        ]
    return snap


def test_a_stopped_real_node_leaves_the_host_as_it_was():
    require_tools(real_node=True)
    before = host_snapshot()
    cluster = k8s.start_cluster(nodes=0, real_node=True)
    node_dir = cluster.node_dir
    try:
        # A running Pod with a memory limit and an emptyDir: cgroups, mounts, a netns, a veth.
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "busy", "namespace": "default"},
            "spec": {
                "nodeName": cluster.real_node_name,
                "containers": [
                    {
                        "name": "main",
                        "image": cluster.workers_image,
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "300"],
                        "resources": {"limits": {"memory": "64Mi"}},
                        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                    }
                ],
                "volumes": [{"name": "scratch", "emptyDir": {}}],
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        wait_for(
            "Pod busy Running",
            lambda: (
                cluster.kubectl(
                    "get", "pod", "busy", "-n", "default", "-o", "jsonpath={.status.phase}"
                ).stdout
                == "Running"
            ),
            60,
        )
        during = host_snapshot()
        assert realnode.BRIDGE in during["interfaces"]
        assert during["cgroups"], "the kubelet made no kubepods cgroups"
        assert "/var/lib/kubelet" in during["paths"]  # device-plugins, whatever root-dir says
    finally:
        cluster.stop()
    after = host_snapshot()
    assert after == before
    assert realnode.leftover_processes(node_dir) == []
    assert not node_dir.exists()
