"""The real node's own tests: containers of our image run for real under containerd and a kubelet.

These use real_node_cluster (tests/support/k8s_fixtures.py): one control-plane start with the
real node, shared by the module. Every Pod is pinned to the real node and uses the image that
`make image` built and the runner imported (imagePullPolicy Never: there is no registry).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import cluster as k8s
from tests.support import realnode
from tests.support.k8s_fixtures import Kubectl
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
BOM = "/usr/share/finex/bom.txt"


def _normalised(pins: dict[str, str]) -> dict[str, str]:
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins.items()}


def _locked_pins() -> dict[str, str]:
    """requirements.lock's name==version lines: what the image must hold, nothing else."""
    text = (REPO / "requirements.lock").read_text()
    return _normalised(dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) ", text, re.M)))


def pod(
    cluster: k8s.Cluster,
    name: str,
    command: list[str] | None = None,
    args: list[str] | None = None,
    **container: Any,
) -> dict[str, Any]:
    """A Pod on the real node running our image once (restartPolicy Never)."""
    main: dict[str, Any] = {
        "name": "main",
        "image": cluster.workers_image,
        "imagePullPolicy": "Never",
        **container,
    }
    if command is not None:
        main["command"] = command
    if args is not None:
        main["args"] = args
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": cluster.real_node_name,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "containers": [main],
        },
    }


def phase(kubectl: Kubectl, name: str) -> str:
    return kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout


def run_to_completion(kubectl: Kubectl, manifest: dict[str, Any], timeout: float = 90) -> str:
    """Apply the Pod, wait until it ends, and return its log; fail if it did not succeed."""
    name = manifest["metadata"]["name"]
    kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_for(
        f"Pod {name} to finish", lambda: phase(kubectl, name) in ("Succeeded", "Failed"), timeout
    )
    logs = kubectl("logs", name).stdout
    status = kubectl("get", "pod", name, "-o", "json").stdout
    assert phase(kubectl, name) == "Succeeded", f"logs:\n{logs}\nstatus:\n{status}"
    return logs


def test_the_real_node_is_ready_beside_a_fake_one(real_node_cluster: k8s.Cluster):
    nodes = json.loads(real_node_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    assert set(by_name) == {realnode.NODE_NAME, "kwok-node-0"}
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
    real = by_name[realnode.NODE_NAME]
    assert real["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert (
        real["status"]["nodeInfo"]["kubeletVersion"] == k8s.pinned_versions()["KUBERNETES_VERSION"]
    )
    assert {"type": "InternalIP", "address": realnode.GATEWAY_IP} in real["status"]["addresses"]
    assert "kwok.x-k8s.io/node" not in real["metadata"].get("annotations", {})


def test_the_imported_image_has_the_dockerfiles_contract(real_node_cluster: k8s.Cluster):
    """The config inside the tar that `make image` built, as containerd got it."""
    with tarfile.open(realnode.image_tars()["workers"]) as tar:

        def blob(digest: str) -> Any:
            member = tar.extractfile(f"./blobs/sha256/{digest.split(':')[1]}")
            assert member is not None
            return json.load(member)

        index = json.load(tar.extractfile("./index.json"))  # type: ignore[arg-type]
        (entry,) = index["manifests"]
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == (
            k8s.pinned_project_version()
        )
        config = blob(blob(entry["digest"])["config"]["digest"])["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["finex"]
    assert config["Cmd"] == ["workers", "start"]
    assert config["WorkingDir"] == "/tmp"
    assert config["Env"][0].startswith("PATH=/opt/finex/bin:")
    assert {"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"} <= set(config["Env"])
    # The bill of materials as labels: the Python packages are exactly requirements.lock's pins
    # (the project itself besides), under the 4 KiB containerd allows a label.
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == k8s.pinned_project_version()
    assert labels["io.finex.bom.path"] == BOM
    assert len(labels["io.finex.bom.python"]) < 4096
    python = dict(p.split("==") for p in labels["io.finex.bom.python"].split())
    assert python.pop("finex-workers") == k8s.pinned_project_version()
    assert _normalised(python) == _locked_pins()
    images = real_node_cluster.ctr("images", "list", "-q").stdout.split()
    assert f"docker.io/library/{real_node_cluster.workers_image}" in images
    assert realnode.PAUSE_IMAGE in images


def test_a_pod_runs_our_image_and_prints_finex_version(
    real_node_cluster: k8s.Cluster, node_kubectl: Kubectl
):
    logs = run_to_completion(node_kubectl, pod(real_node_cluster, "version", args=["--version"]))
    assert k8s.pinned_project_version() in logs


def test_finex_version_and_the_bom_in_the_image_agree(
    real_node_cluster: k8s.Cluster, node_kubectl: Kubectl
):
    script = f"finex --version && cat {BOM} && sha256sum {BOM}"
    logs = run_to_completion(
        node_kubectl, pod(real_node_cluster, "bom", command=["sh", "-c", script])
    )
    version_line, *bom, sha_line = logs.splitlines()
    version = k8s.pinned_project_version()
    assert version_line == f"finex {version}"
    entries = [line for line in bom if not line.startswith("#")]
    python = dict(e.removeprefix("python ").split("==") for e in entries if e.startswith("python "))
    debian = [e for e in entries if e.startswith("debian ")]
    assert python.pop("finex-workers") == version
    assert _normalised(python) == _locked_pins()
    assert any(e.startswith("debian python3.11=") for e in debian), debian
    assert len(entries) == len(python) + 1 + len(debian)
    with tarfile.open(realnode.image_tars()["workers"]) as tar:
        index = json.load(tar.extractfile("./index.json"))  # type: ignore[arg-type]
        (entry,) = index["manifests"]
        manifest = json.load(tar.extractfile(f"./blobs/sha256/{entry['digest'].split(':')[1]}"))  # type: ignore[arg-type]
        config_digest = manifest["config"]["digest"].split(":")[1]
        config = json.load(tar.extractfile(f"./blobs/sha256/{config_digest}"))  # type: ignore[arg-type]
    assert sha_line.split()[0] == config["config"]["Labels"]["io.finex.bom.sha256"]


def test_the_entrypoint_is_the_finex_cli(real_node_cluster: k8s.Cluster, node_kubectl: Kubectl):
    logs = run_to_completion(node_kubectl, pod(real_node_cluster, "help", args=["--help"]))
    assert logs.startswith("usage: finex")
    for verb in ("workers", "exporter"):
        assert verb in logs


def test_apply_to_running_and_kubectl_logs(real_node_cluster: k8s.Cluster, node_kubectl: Kubectl):
    script = "for i in 1 2 3; do echo line-$i; done; echo to-stderr >&2; exec sleep 300"
    manifest = pod(real_node_cluster, "talker", command=["sh", "-c", script])
    t0 = time.monotonic()
    node_kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_for("Pod talker Running", lambda: phase(node_kubectl, "talker") == "Running", 60, 0.05)
    elapsed = time.monotonic() - t0
    print(f"\napply -> Running: {elapsed:.2f}s")
    logs = wait_for(
        "the Pod's output in kubectl logs",
        lambda: (out := node_kubectl("logs", "talker").stdout).count("line-") == 3 and out,
        30,
    )
    # stdout and stderr are separate pipes, so their lines may interleave either way.
    assert sorted(logs.splitlines()) == ["line-1", "line-2", "line-3", "to-stderr"]
    assert len(node_kubectl("logs", "talker", "--tail=2").stdout.splitlines()) == 2
    assert elapsed < 30


def test_a_memory_limit_is_the_containers_cgroup_limit(
    real_node_cluster: k8s.Cluster, node_kubectl: Kubectl
):
    manifest = pod(
        real_node_cluster,
        "limited",
        command=["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        resources={"limits": {"memory": "96Mi", "cpu": "250m"}},
    )
    logs = run_to_completion(node_kubectl, manifest)
    assert int(logs.strip()) == 96 * 1024 * 1024


TRAP_TERM = """
import os, signal, sys, time
def on_term(signum, frame):
    with open("/exchange/term", "w") as f:
        f.write(f"{signal.Signals(signum).name} pid={os.getpid()}")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print(f"ready pid={os.getpid()}", flush=True)
while True:
    time.sleep(0.05)
"""


def test_kubectl_delete_pod_delivers_sigterm_to_pid_1_within_the_grace_period(
    real_node_cluster: k8s.Cluster, node_kubectl: Kubectl, node_namespace: str
):
    # A hostPath under the node's directory is how the test sees what the container did after
    # the Pod is gone (its logs go with it).
    exchange = real_node_cluster.node_dir / "exchange" / node_namespace
    exchange.mkdir(parents=True)
    exchange.chmod(0o777)  # the image runs as uid 10001
    manifest = pod(
        real_node_cluster,
        "trapper",
        command=["python3", "-c", TRAP_TERM],
        volumeMounts=[{"name": "exchange", "mountPath": "/exchange"}],
    )
    manifest["spec"]["volumes"] = [
        {"name": "exchange", "hostPath": {"path": str(exchange), "type": "Directory"}}
    ]
    node_kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_for(
        "the trap to be installed",
        lambda: "ready pid=1" in node_kubectl("logs", "trapper", check=False).stdout,
        60,
    )
    t0 = time.monotonic()
    node_kubectl("delete", "pod", "trapper", "--grace-period=30", "--wait=true", timeout=60)
    elapsed = time.monotonic() - t0
    assert (exchange / "term").read_text() == "SIGTERM pid=1"
    # It exited on the signal itself, long before the kubelet's SIGKILL at 30 s.
    assert elapsed < 20, f"deletion took {elapsed:.1f}s"


def test_a_restricted_pod_with_a_read_only_root_filesystem_runs(
    real_node_cluster: k8s.Cluster, node_kubectl: Kubectl, node_namespace: str
):
    real_node_cluster.kubectl(
        "label", "namespace", node_namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    script = (
        "id -u; id -g; "
        "(touch /probe 2>/dev/null && echo root-writable) || echo root-read-only; "
        "echo scratch > /tmp/f && cat /tmp/f; "
        "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status"
    )
    manifest = pod(
        real_node_cluster,
        "restricted",
        command=["sh", "-c", script],
        securityContext={
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
    )
    manifest["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    # The namespace enforces the restricted profile: a Pod that is not compliant is refused.
    loose = pod(real_node_cluster, "loose", command=["true"])
    refused = node_kubectl("apply", "-f", "-", input=json.dumps(loose), check=False)
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr

    lines = run_to_completion(node_kubectl, manifest).split("\n")
    assert lines[:4] == ["10001", "10001", "root-read-only", "scratch"]
    status = dict(line.split(":\t") for line in lines[4:] if line)
    assert int(status["CapEff"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # a seccomp filter is in force


@pytest.fixture
def gateway_echo(real_node_cluster: k8s.Cluster) -> Iterator[tuple[str, int]]:
    """A TCP server on the bridge's gateway address that answers 'hello <what you sent>'."""
    server = socket.create_server((real_node_cluster.gateway_ip, 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"hello " + conn.recv(100))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield real_node_cluster.gateway_ip, server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_pods_get_bridge_ips_and_reach_a_host_service_on_the_gateway(
    real_node_cluster: k8s.Cluster, node_kubectl: Kubectl, gateway_echo: tuple[str, int]
):
    host, port = gateway_echo
    script = (
        f"import socket; s = socket.create_connection(({host!r}, {port}), timeout=10); "
        "s.sendall(b'pod'); print(s.recv(100).decode())"
    )
    manifest = pod(real_node_cluster, "client", command=["python3", "-c", script])
    logs = run_to_completion(node_kubectl, manifest)
    assert logs.strip() == "hello pod"
    pod_ip = node_kubectl("get", "pod", "client", "-o", "jsonpath={.status.podIP}").stdout
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(realnode.POD_SUBNET)
    assert pod_ip != realnode.GATEWAY_IP


@pytest.fixture
def gateway_redis(real_node_cluster: k8s.Cluster, tmp_path: Path) -> Iterator[int]:
    """Debian's redis-server bound to the gateway address only; yields its port.

    This is how the fleet's Pods will reach Redis. finex_workers.dev.localservices.start_redis binds
    127.0.0.1 only (and keeps protected mode on), so this starts the server itself.
    """
    port = k8s.free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            *("--bind", real_node_cluster.gateway_ip, "--port", str(port)),
            *("--save", "", "--appendonly", "no", "--dir", str(tmp_path)),
            # Redis refuses non-loopback clients without a password in protected mode. The
            # bridge is reachable only from this host and its Pods, so it is off here.
            *("--protected-mode", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    wait_for(
        "redis-server on the gateway",
        lambda: socket.socket().connect_ex((real_node_cluster.gateway_ip, port)) == 0,
        30,
    )
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def test_a_pod_talks_to_redis_on_the_gateway(
    real_node_cluster: k8s.Cluster, node_kubectl: Kubectl, gateway_redis: int
):
    script = (
        f"import redis; r = redis.Redis({real_node_cluster.gateway_ip!r}, {gateway_redis}); "
        "r.set('from-pod', 'yes'); print(r.get('from-pod').decode())"
    )
    logs = run_to_completion(
        node_kubectl, pod(real_node_cluster, "redis-client", command=["python3", "-c", script])
    )
    assert logs.strip() == "yes"
