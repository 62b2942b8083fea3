"""A real Kubernetes control plane on loopback, for e2e tests and local demos.

It runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes whose
Pods become Running and Ready) from the binaries that hack/build-k8s-tools.sh builds into
$K8S_CACHE/<kubernetes version>/bin. Every component binds 127.0.0.1 on a free port. The
apiserver uses its own CA, serving and client certificates (made with the openssl CLI), RBAC
and a service-account signing key, so RBAC and ServiceAccount tokens behave as in a cluster.

With real_node=True it also runs one real node beside the fake ones: Debian's containerd and a
kubelet, with the project's image imported, on a bridge the runner creates (tests/support/
realnode.py says how, and what it cleans up).

Children run in their own process groups and are stopped on stop(), at interpreter exit and on
SIGTERM/SIGHUP; on Linux they also get SIGKILL if the thread that started them dies.

Command line (the Makefile's cluster-up / cluster-down):
    python -m tests.support.cluster up [--foreground] [--nodes N] [--real-node]
    python -m tests.support.cluster down
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from finex_workers.infra.processes import pid_alive
from tests.support import realnode
from tests.support.relay import Relay

REPO = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO / "hack" / "k8s-versions.env"
STATE_DIR = REPO / ".data" / "cluster"  # where `up` keeps its cluster (.data/ is git-ignored)
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)
REAL_NODE_BINARIES = ("kubelet",)
#: The label and annotation of kwok's fake nodes: kwok manages only the nodes annotated so.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")


class ToolsMissingError(RuntimeError):
    """The cached binaries are absent: run `make k8s-tools`."""


class CommandError(subprocess.CalledProcessError):
    """A kubectl or helm run failed; unlike CalledProcessError, str() carries its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}"


class ClusterStartError(RuntimeError):
    """A component did not become healthy; the message carries the tail of its log."""


# --- pinned versions and binaries -------------------------------------------------------------


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=value pairs of hack/k8s-versions.env, the one place the versions are written."""
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip().strip("\"'")
    return versions


def pinned_project_version() -> str:
    """The project's version in pyproject.toml: the tag of the image hack/build-image.sh builds."""
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("pyproject.toml has no version")


def cache_root() -> Path:
    """$K8S_CACHE/<kubernetes version>: bin/, crds/ and kwok/ made by the build script."""
    cache = os.environ.get("K8S_CACHE") or str(Path.home() / ".cache" / "finex" / "k8s")
    return Path(cache) / pinned_versions()["KUBERNETES_VERSION"]


@dataclass(frozen=True)
class Tools:
    """Paths of the cached binaries and data files."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def crds(self) -> Path:
        """prometheus-operator's PrometheusRule and ServiceMonitor CRD YAML."""
        return self.root / "crds"

    @property
    def kwok_stages(self) -> Path:
        return self.root / "kwok" / "stages.yaml"

    def path(self, name: str) -> Path:
        return self.bin / name


def find_tools(real_node: bool = False) -> Tools:
    """The cached toolchain (with the kubelet for a real node), or ToolsMissingError."""
    tools = Tools(cache_root())
    wanted = BINARIES + (REAL_NODE_BINARIES if real_node else ())
    missing = [b for b in wanted if not os.access(tools.path(b), os.X_OK)]
    if not tools.kwok_stages.is_file():
        missing.append(str(tools.kwok_stages.relative_to(tools.root)))
    if missing:
        raise ToolsMissingError(
            f"the local Kubernetes toolchain is not built: {tools.root} lacks "
            + ", ".join(missing)
            + ". Run `make k8s-tools` (hack/build-k8s-tools.sh); it builds the versions pinned "
            "in hack/k8s-versions.env into $K8S_CACHE."
        )
    return tools


# --- small helpers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], check=True, text=True, capture_output=True, **kwargs
    )


# prctl is looked up here, not in the forked child, where dlopen could deadlock.
_PRCTL = (
    getattr(ctypes.CDLL(None, use_errno=True), "prctl", None) if sys.platform == "linux" else None
)
_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """In the child: its own process group, and SIGKILL when the parent dies (throwaway state)."""
    os.setsid()
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _wait_until(
    what: str, check: Callable[[], bool], timeout: float, alive: Callable[[], None]
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        alive()
        if check():
            return
        if time.monotonic() > deadline:
            raise ClusterStartError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _https_ok(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# --- certificates (openssl CLI) ----------------------------------------------------------------


class CertificateAuthority:
    """A throwaway CA in `directory` that signs serving and client certificates."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.crt"
        self.key = self.dir / "ca.key"
        if not self.cert.exists():
            _run(
                ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", self.key]
            )
            _run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    self.key,
                    "-out",
                    self.cert,
                    "-days",
                    "3650",
                    "-subj",
                    "/CN=finex-local-ca",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                ]
            )

    def issue(
        self,
        name: str,
        common_name: str,
        organizations: Sequence[str] = (),
        sans: Sequence[str] = (),
        server: bool = False,
    ) -> tuple[Path, Path]:
        """Sign a new key pair; returns (cert, key). sans are openssl entries like IP:127.0.0.1."""
        key, csr, cert = (self.dir / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        subject = f"/CN={common_name}" + "".join(f"/O={o}" for o in organizations)
        _run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key])
        _run(["openssl", "req", "-new", "-key", key, "-out", csr, "-subj", subject])
        ext_lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=" + ("serverAuth,clientAuth" if server else "clientAuth"),
        ]
        if sans:
            ext_lines.append("subjectAltName=" + ",".join(sans))
        ext = self.dir / f"{name}.ext"
        ext.write_text("\n".join(ext_lines) + "\n")
        _run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                self.cert,
                "-CAkey",
                self.key,
                "-CAcreateserial",
                "-out",
                cert,
                "-days",
                "365",
                "-extfile",
                ext,
            ]
        )
        key.chmod(0o600)
        return cert, key


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    server: str,
    ca_cert: Path,
    user: str,
    *,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    """A self-contained kubeconfig (certificates embedded) for one user."""
    credentials: dict[str, str] = {}
    if client_cert and client_key:
        credentials = {
            "client-certificate-data": _b64(client_cert),
            "client-key-data": _b64(client_key),
        }
    if token:
        credentials["token"] = token
    context: dict[str, str] = {"cluster": "finex-local", "user": user}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "finex-local",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": context}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path


# --- the cluster -------------------------------------------------------------------------------


def _node_manifest(name: str) -> dict[str, Any]:
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": capacity,
            "capacity": capacity,
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        },
    }


@dataclass(eq=False)  # identity equality and hash: kept in the _LIVE set
class Cluster:
    """One running control plane. Use start_cluster(); stop() is idempotent."""

    workdir: Path
    tools: Tools
    nodes: int = 2
    remove_workdir: bool = True
    real_node: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    startup_seconds: float = 0.0
    #: Of startup_seconds: the real node's share (bridge, containerd, image import, kubelet Ready).
    node_startup_seconds: float = 0.0
    _ca: CertificateAuthority | None = None
    _host_lock: realnode.HostLock | None = None
    _relay: Relay | None = None
    _stopped: bool = False

    # -- public API --

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig: a client certificate in group system:masters."""
        return self.workdir / "kubeconfig"

    @property
    def node_dir(self) -> Path:
        """The real node's directory: containerd, kubelet, CNI state and host-state.json."""
        return self.workdir / "node"

    @property
    def real_node_name(self) -> str:
        """Name of the real node (pin Pods to it with nodeName or kubernetes.io/hostname)."""
        assert self.real_node, "started without real_node=True"
        return realnode.NODE_NAME

    @property
    def gateway_ip(self) -> str:
        """The bridge's address on the host: Pods reach host services (Redis, PostgreSQL) here."""
        assert self.real_node, "started without real_node=True"
        return realnode.GATEWAY_IP

    @property
    def pod_apiserver(self) -> tuple[str, int]:
        """Where a Pod on the real node reaches the apiserver (KUBERNETES_SERVICE_HOST/PORT):
        a relay on the bridge's gateway, since the apiserver binds loopback only."""
        assert self._relay is not None, "started without real_node=True"
        return self._relay.address

    @property
    def workers_image(self) -> str:
        """The project's image as Pods name it (imported into containerd, never pulled)."""
        return f"finex-workers:{pinned_project_version()}"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Debian's ctr against the real node's containerd, namespace k8s.io (the CRI's)."""
        cmd = ["ctr", "--address", str(realnode.socket_path(self.node_dir)), "-n", "k8s.io", *args]
        proc = subprocess.run(cmd, text=True, capture_output=True, check=False, timeout=120)
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    @property
    def ca(self) -> CertificateAuthority:
        assert self._ca is not None, "cluster not started"
        return self._ca

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        """os.environ with KUBECONFIG set and the cached bin/ (kubectl, helm) first on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(kubeconfig or self.kubeconfig)
        env["PATH"] = f"{self.tools.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the cached kubectl against this cluster (admin unless kubeconfig is given).

        With check=True a failure raises CommandError, whose message includes stderr.
        """
        return self._run_tool("kubectl", args, kubeconfig, input, check, timeout)

    def helm(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run the cached helm against this cluster, like kubectl()."""
        return self._run_tool("helm", args, kubeconfig, None, check, timeout)

    def install_monitoring_crds(self) -> None:
        """Apply prometheus-operator's PrometheusRule, ServiceMonitor and PodMonitor CRDs, and wait.

        Charts that ship those kinds need them to exist.
        """
        files = sorted(self.tools.crds.glob("*.yaml"))
        args = [arg for f in files for arg in ("-f", str(f))]
        self.kubectl("apply", "--server-side", "--force-conflicts", *args)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *args)

    def _run_tool(
        self,
        tool: str,
        args: Sequence[str],
        kubeconfig: Path | None,
        input: str | None,
        check: bool,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.tools.path(tool)), *args]
        proc = subprocess.run(
            cmd,
            input=input,
            text=True,
            capture_output=True,
            env=self.env(kubeconfig),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def kubeconfig_for_user(
        self, name: str, groups: Sequence[str] = (), namespace: str | None = None
    ) -> Path:
        """A kubeconfig with a client certificate for user `name` in `groups` (for RBAC tests)."""
        safe = "".join(c if c.isalnum() else "-" for c in name)
        cert, key = self.ca.issue(f"user-{safe}", name, organizations=groups)
        return write_kubeconfig(
            self.workdir / "users" / f"{safe}.kubeconfig",
            self.server,
            self.ca.cert,
            name,
            client_cert=cert,
            client_key=key,
            namespace=namespace,
        )

    def kubeconfig_for_service_account(
        self, namespace: str, name: str, duration: str = "1h"
    ) -> Path:
        """A kubeconfig carrying a token for ServiceAccount namespace/name (TokenRequest API)."""
        token = self.kubectl(
            "create", "token", name, "--namespace", namespace, "--duration", duration
        ).stdout.strip()
        user = f"system:serviceaccount:{namespace}:{name}"
        return write_kubeconfig(
            self.workdir / "users" / f"sa-{namespace}-{name}.kubeconfig",
            self.server,
            self.ca.cert,
            user,
            token=token,
            namespace=namespace,
        )

    def stop(self) -> None:
        """Stop every component (process groups: SIGTERM, then SIGKILL) and remove the workdir."""
        if self._stopped:
            return
        self._stopped = True
        if self.real_node and "kubelet" in self.processes:
            self._drain_real_node()
        if self._relay is not None:
            self._relay.stop()
        # In batches, each waited for: the real node, then the other clients, then etcd. An
        # apiserver whose etcd went at the same moment spends the whole 10 s retrying it.
        names = list(reversed(self.processes))
        node = [n for n in names if n in ("kubelet", "containerd")]
        clients = [n for n in names if n not in node and n != "etcd"]
        for batch in (node, clients, ["etcd"]):
            self._stop_processes([self.processes[n] for n in batch if n in self.processes])
        for proc in self.processes.values():
            _kill_group(proc.pid, signal.SIGKILL)  # stragglers in the group, if any
        if self.real_node and (self.node_dir / "host-state.json").exists():
            for line in realnode.clean_host(self.node_dir):
                print(f"real node teardown: {line}", file=sys.stderr)
        if self._host_lock is not None:
            self._host_lock.release()
        _LIVE.discard(self)
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _stop_processes(procs: Sequence[subprocess.Popen[bytes]]) -> None:
        """SIGTERM their groups, wait up to 10 s in all, SIGKILL what is left."""
        for proc in procs:
            if proc.poll() is None:
                _kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    # -- start-up --

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def _spawn(
        self,
        name: str,
        args: Sequence[str | Path],
        executable: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        log = self._log(name).open("ab")
        self.processes[name] = subprocess.Popen(
            [str(executable or self.tools.path(name)), *map(str, args)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_child_setup,  # noqa: PLW1509 - only setsid and prctl, async-signal-safe
            cwd=self.workdir,
            env=env,
        )
        log.close()

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = "".join(self._log(name).read_text(errors="replace").splitlines(True)[-30:])
                raise ClusterStartError(
                    f"{name} exited with code {proc.returncode} while starting; "
                    f"last lines of {self._log(name)}:\n{tail}"
                )

    def _component_kubeconfig(self, name: str, cn: str, groups: Sequence[str] = ()) -> Path:
        cert, key = self.ca.issue(name, cn, organizations=groups)
        return write_kubeconfig(
            self.workdir / f"{name}.kubeconfig",
            self.server,
            self.ca.cert,
            cn,
            client_cert=cert,
            client_key=key,
        )

    def start(self) -> None:
        t0 = time.monotonic()
        _LIVE.add(self)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        for name in (
            "etcd-client",
            "etcd-peer",
            "apiserver",
            "controller-manager",
            "scheduler",
            "kwok",
            *(("kubelet", "kubelet-healthz") if self.real_node else ()),
        ):
            self.ports[name] = free_port()
        pki = self.workdir / "pki"
        self._ca = CertificateAuthority(pki)
        serving_cert, serving_key = self.ca.issue(
            "apiserver",
            "kube-apiserver",
            server=True,
            sans=[
                "IP:127.0.0.1",
                f"IP:{SERVICE_IP}",
                # Pods on the real node reach the apiserver through a relay on the bridge.
                *([f"IP:{realnode.GATEWAY_IP}"] if self.real_node else []),
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ],
        )
        sa_key, sa_pub = pki / "sa.key", pki / "sa.pub"
        _run(
            [
                "openssl",
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                sa_key,
            ]
        )
        _run(["openssl", "pkey", "-in", sa_key, "-pubout", "-out", sa_pub])
        admin_cert, admin_key = self.ca.issue("admin", "finex-admin", ["system:masters"])
        write_kubeconfig(
            self.kubeconfig,
            self.server,
            self.ca.cert,
            "finex-admin",
            client_cert=admin_cert,
            client_key=admin_key,
        )
        kcm_kc = self._component_kubeconfig("controller-manager", "system:kube-controller-manager")
        sched_kc = self._component_kubeconfig("scheduler", "system:kube-scheduler")
        kwok_kc = self._component_kubeconfig("kwok", "kwok", ["system:masters"])

        etcd_client = f"http://127.0.0.1:{self.ports['etcd-client']}"
        etcd_peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn(
            "etcd",
            [
                "--name",
                "finex",
                "--data-dir",
                self.workdir / "etcd",
                "--listen-client-urls",
                etcd_client,
                "--advertise-client-urls",
                etcd_client,
                "--listen-peer-urls",
                etcd_peer,
                "--initial-advertise-peer-urls",
                etcd_peer,
                "--initial-cluster",
                f"finex={etcd_peer}",
                "--initial-cluster-state",
                "new",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={serving_cert}",
                f"--tls-private-key-file={serving_key}",
                f"--client-ca-file={self.ca.cert}",
                "--authorization-mode=Node,RBAC",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                *self._kubelet_client_flags(),
                "--v=0",
            ],
        )
        admin_ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        admin_ctx.load_cert_chain(str(admin_cert), str(admin_key))
        _wait_until(
            "kube-apiserver /readyz",
            lambda: _https_ok(f"{self.server}/readyz", admin_ctx),
            90,
            self._check_alive,
        )
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kcm_kc}",
                f"--authentication-kubeconfig={kcm_kc}",
                f"--authorization-kubeconfig={kcm_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['controller-manager']}",
                f"--cert-dir={self.workdir / 'controller-manager'}",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.ca.cert}",
                f"--cluster-signing-cert-file={self.ca.cert}",
                f"--cluster-signing-key-file={self.ca.key}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Every default controller; none needs a cloud or a kubelet. bootstrapsigner and
                # tokencleaner are off by default and stay off.
                "--controllers=*",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={sched_kc}",
                f"--authentication-kubeconfig={sched_kc}",
                f"--authorization-kubeconfig={sched_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}",
                f"--cert-dir={self.workdir / 'scheduler'}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        self._spawn(
            "kwok",
            [
                f"--kubeconfig={kwok_kc}",
                # Only the fake nodes: a real node's kubelet reports its own status.
                "--manage-nodes-with-annotation-selector=" + "=".join(KWOK_NODE_ANNOTATION),
                f"--config={self.tools.kwok_stages}",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.1/16",
            ],
        )
        nodes = [_node_manifest(f"kwok-node-{i}") for i in range(self.nodes)]
        if nodes:  # kubectl apply refuses an empty input ("no objects passed to apply")
            self.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(n) for n in nodes))

        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # self-signed serving certs of kcm/scheduler
        for name, url in (
            ("kube-controller-manager", f"https://127.0.0.1:{self.ports['controller-manager']}"),
            ("kube-scheduler", f"https://127.0.0.1:{self.ports['scheduler']}"),
        ):
            _wait_until(
                f"{name} /healthz",
                functools.partial(_https_ok, f"{url}/healthz", insecure),
                60,
                self._check_alive,
            )
        _wait_until(
            "kwok /healthz",
            lambda: _http_ok(f"http://127.0.0.1:{self.ports['kwok']}/healthz"),
            60,
            self._check_alive,
        )
        _wait_until("fake nodes Ready", self._nodes_ready, 60, self._check_alive)
        _wait_until(
            "ServiceAccount default/default",
            lambda: (
                self.kubectl(
                    "get",
                    "serviceaccount",
                    "default",
                    "--namespace",
                    "default",
                    check=False,
                ).returncode
                == 0
            ),
            60,
            self._check_alive,
        )
        if self.real_node:
            self._start_real_node()
            self._relay = Relay(realnode.GATEWAY_IP, 0, ("127.0.0.1", self.ports["apiserver"]))
        self.startup_seconds = time.monotonic() - t0

    # -- the real node --

    def _kubelet_client_flags(self) -> list[str]:
        """The apiserver's flags for reaching kubelets (logs, exec): only with a real node."""
        if not self.real_node:
            return []
        cert, key = self.ca.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"]
        )
        return [
            f"--kubelet-client-certificate={cert}",
            f"--kubelet-client-key={key}",
            f"--kubelet-certificate-authority={self.ca.cert}",
            # The node's InternalIP is the bridge address; its hostname resolves nowhere.
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _start_real_node(self) -> None:
        """Bridge, containerd, the images, the kubelet; then wait until the node is Ready."""
        t0 = time.monotonic()
        realnode.require_host_tools()
        tars = realnode.image_tars()
        self._host_lock = realnode.HostLock()
        self._host_lock.acquire()
        node = self.node_dir
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "pki"):
            (node / sub).mkdir(parents=True, exist_ok=True)
        state = realnode.HostState.record(node)
        state.bridge_created = not realnode.bridge_exists()
        state.save(node / "host-state.json")  # before any change: clean_host() reads it
        realnode.create_bridge()

        (node / "containerd" / "config.toml").write_text(realnode.containerd_config(node))
        conflist = node / "cni" / "net.d" / "10-finex-bridge.conflist"
        conflist.write_text(json.dumps(realnode.cni_conflist(node), indent=2) + "\n")
        (node / "resolv.conf").write_text("# no DNS on the test cluster's real node\n")
        self._start_containerd()
        self.ctr(
            "images", "import", "--base-name", realnode.WORKERS_IMAGE_BASE, str(tars["workers"])
        )
        self.ctr(
            "images",
            "import",
            "--base-name",
            realnode.PAUSE_IMAGE.split(":")[0],
            str(tars["pause"]),
        )

        name = realnode.NODE_NAME
        client_cert, client_key = self.ca.issue(
            "kubelet-client", f"system:node:{name}", ["system:nodes"]
        )
        kubeconfig = write_kubeconfig(
            node / "kubelet.kubeconfig",
            self.server,
            self.ca.cert,
            f"system:node:{name}",
            client_cert=client_cert,
            client_key=client_key,
        )
        serving_cert, serving_key = self.ca.issue(
            "kubelet-serving",
            f"system:node:{name}",
            ["system:nodes"],
            sans=[f"IP:{realnode.GATEWAY_IP}", f"DNS:{name}"],
            server=True,
        )
        files = realnode.KubeletFiles(self.ca.cert, serving_cert, serving_key)
        config = realnode.kubelet_config(
            node, files, self.ports["kubelet"], self.ports["kubelet-healthz"]
        )
        (node / "kubelet.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._spawn(
            "kubelet",
            [
                f"--config={node / 'kubelet.yaml'}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={node / 'kubelet'}",
                f"--cert-dir={node / 'pki'}",
                f"--node-ip={realnode.GATEWAY_IP}",
                f"--hostname-override={name}",
                "--node-labels=finex.io/node=real",
                "--v=1",
            ],
            # No sbin on its PATH, so no iptables: the kubelet would add KUBE-FIREWALL (a DROP
            # rule for 127.0.0.0/8) and canary chains to the host, and a bridge-only node with
            # no Services needs none of them. It logs that iptables is missing and goes on.
            env={**os.environ, "PATH": realnode.KUBELET_PATH},
        )
        _wait_until("the real node Ready", self._real_node_ready, 120, self._check_alive)
        self.node_startup_seconds = time.monotonic() - t0

    def _start_containerd(self) -> None:
        self._spawn(
            "containerd",
            ["--config", self.node_dir / "containerd" / "config.toml", "--log-level", "warn"],
            executable="containerd",
        )
        _wait_until(
            "containerd's socket",
            lambda: self.ctr("version", check=False).returncode == 0,
            30,
            self._check_alive,
        )

    def restart_containerd(self) -> float:
        """A node-level restart of containerd; returns the seconds it was down.

        SIGTERM goes to containerd's process only, not its group: each container's shim lives in
        its own process group and runs on, so the containers do too, as on a node whose service
        manager restarts containerd with KillMode=process (containerd's own systemd unit).
        """
        assert self.real_node, "started without real_node=True"
        proc = self.processes["containerd"]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        self._start_containerd()
        return time.monotonic() - started

    def _real_node_ready(self) -> bool:
        status = self.kubectl(
            "get",
            "node",
            realnode.NODE_NAME,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        ).stdout
        return status == "True"

    def _drain_real_node(self) -> None:
        """Let the kubelet stop the node's Pods (containers, sandboxes, CNI) before it stops.

        Whatever is left after that is killed and unmounted by realnode.clean_host().
        """
        apiserver = self.processes.get("kube-apiserver")
        if apiserver is None or apiserver.poll() is not None:
            return
        name = realnode.NODE_NAME
        self.kubectl("cordon", name, check=False, timeout=20)
        self.kubectl(
            "delete",
            "pods",
            "--all-namespaces",
            f"--field-selector=spec.nodeName={name}",
            "--grace-period=1",
            "--wait=false",
            check=False,
            timeout=20,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tasks = self.ctr("tasks", "list", "-q", check=False)
            if tasks.returncode != 0 or not tasks.stdout.strip():
                return
            time.sleep(0.5)

    def _nodes_ready(self) -> bool:
        out = self.kubectl(
            "get",
            "nodes",
            "-l",
            "type=kwok",
            "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
            check=False,
        ).stdout.split()
        return len(out) == self.nodes and all(s == "True" for s in out)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# Clusters of this process, stopped at exit and on SIGTERM/SIGHUP (Ctrl-C raises
# KeyboardInterrupt, which unwinds fixtures and then reaches atexit).
_LIVE: set[Cluster] = set()


def _stop_all() -> None:
    for cluster in list(_LIVE):
        cluster.stop()


def _on_signal(signum: int, _frame: object) -> None:
    # Stop the children first, then unwind like Ctrl-C: pytest ends the session cleanly.
    _stop_all()
    raise KeyboardInterrupt(f"signal {signum}")


_handlers_installed = False


def _install_handlers() -> None:
    global _handlers_installed  # noqa: PLW0603 - once per process
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        # Leave a handler someone else installed alone; only replace the default action.
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)


def _remove_orphaned_workdirs(parent: Path) -> None:
    """Remove k8s-* workdirs left by a process that was killed hard (SIGKILL skips cleanup)."""
    for old in parent.glob("k8s-*"):
        try:
            owner = int((old / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not pid_alive(owner):
            node = old / "node"
            if (node / "host-state.json").exists() and realnode.clean_host_if_free(node) is None:
                continue  # another real node runs: leave this one's cleanup for later
            shutil.rmtree(old, ignore_errors=True)


#: Starts tried when a component loses its port to another process (see start_cluster).
PORT_RACE_ATTEMPTS = 3


def start_cluster(
    workdir: Path | None = None,
    nodes: int = 2,
    remove_workdir: bool | None = None,
    real_node: bool = False,
) -> Cluster:
    """Start a control plane and wait until it is healthy with `nodes` Ready fake nodes.

    With real_node=True a real node (containerd + kubelet, tests/support/realnode.py) joins too.
    Without workdir a fresh directory under .data/ is used and removed on stop(). Raises
    ToolsMissingError (run `make k8s-tools`), realnode.RealNodeError (what to install or stop)
    or ClusterStartError (with the component's log).
    """
    tools = find_tools(real_node=real_node)
    if workdir is None:
        (REPO / ".data").mkdir(exist_ok=True)
        _remove_orphaned_workdirs(REPO / ".data")
        workdir = Path(tempfile.mkdtemp(prefix="k8s-", dir=REPO / ".data"))
        remove_workdir = True if remove_workdir is None else remove_workdir
    # Ports are picked free, then bound seconds later by the components; another process on the
    # machine can take one in between. That failure is retried with fresh ports.
    for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "owner.pid").write_text(f"{os.getpid()}\n")
        cluster = Cluster(
            workdir=workdir,
            tools=tools,
            nodes=nodes,
            remove_workdir=bool(remove_workdir),
            real_node=real_node,
        )
        _install_handlers()
        try:
            cluster.start()
        except ClusterStartError as exc:
            cluster.stop()
            if "address already in use" not in str(exc) or attempt == PORT_RACE_ATTEMPTS:
                raise
            continue
        except BaseException:
            cluster.stop()
            raise
        return cluster
    raise AssertionError("unreachable")


# --- command line: up / down -------------------------------------------------------------------


def _state_file() -> Path:
    return STATE_DIR / "state.json"


def _read_state() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return None
    return data


def _serve(nodes: int, ready_fd: int | None, real_node: bool = False) -> int:
    """Run a cluster in STATE_DIR until SIGTERM/SIGINT; write state.json once it is healthy."""
    cluster = start_cluster(STATE_DIR, nodes=nodes, remove_workdir=True, real_node=real_node)
    state = {
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "kubeconfig": str(cluster.kubeconfig),
        "server": cluster.server,
        "ports": cluster.ports,
        "children": {name: p.pid for name, p in cluster.processes.items()},
        "startup_seconds": round(cluster.startup_seconds, 1),
        "real_node": realnode.NODE_NAME if real_node else None,
        "gateway_ip": realnode.GATEWAY_IP if real_node else None,
        "node_startup_seconds": round(cluster.node_startup_seconds, 1),
    }
    _state_file().write_text(json.dumps(state, indent=2) + "\n")
    print(f"control plane ready in {cluster.startup_seconds:.1f}s", flush=True)
    if ready_fd is None:
        _print_usage(state)
    else:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    while True:
        for name, proc in cluster.processes.items():
            if proc.poll() is not None:
                print(f"{name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                cluster.stop()
                return 1
        time.sleep(1)


def _up(nodes: int, foreground: bool, real_node: bool = False) -> int:
    state = _read_state()
    if state and pid_alive(int(state["pid"])):
        print(f"already running (pid {state['pid']})")
        _print_usage(state)
        return 0
    if (STATE_DIR / "node" / "host-state.json").exists():  # a real node whose server died hard
        realnode.clean_host_if_free(STATE_DIR / "node")
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    STATE_DIR.mkdir(parents=True)
    if foreground:
        return _serve(nodes, None, real_node)
    # Daemonise: a detached child runs the cluster; we wait for its "ready" line.
    read_fd, write_fd = os.pipe()
    log = (REPO / ".data" / "cluster.log").open("wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.cluster",
            "_serve",
            "--nodes",
            str(nodes),
            *(["--real-node"] if real_node else []),
            "--ready-fd",
            str(write_fd),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        pass_fds=(write_fd,),
        start_new_session=True,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as ready:
        line = ready.readline()
    if not line:
        proc.wait(timeout=30)
        print(f"the control plane failed to start; see {log.name}:", file=sys.stderr)
        print(Path(log.name).read_text(errors="replace")[-4000:], file=sys.stderr)
        return 1
    state = _read_state() or {}
    print(f"control plane up in {time.monotonic() - t0:.1f}s (pid {proc.pid}, log {log.name})")
    _print_usage(state)
    return 0


def _print_usage(state: dict[str, Any]) -> None:
    print(
        textwrap.dedent(f"""\
        kubeconfig: {state.get("kubeconfig")}
        apiserver:  {state.get("server")}
        binaries:   {find_tools().bin}  (kubectl, helm)

            export KUBECONFIG={state.get("kubeconfig")}
            export PATH={find_tools().bin}:$PATH
            kubectl get nodes

        """)
        + (
            f"real node: {state['real_node']} (containerd), gateway {state['gateway_ip']}: "
            "Pods reach host services there, and `kubectl logs` works\n"
            if state.get("real_node")
            else ""
        )
        + "stop it with: make cluster-down"
    )


def _down() -> int:
    state = _read_state()
    if not state:
        print("no local control plane is running")
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        return 0
    pid = int(state["pid"])
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60  # a real node drains its Pods first
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever is still there (the server was killed hard): stop the children's groups.
    for child in state.get("children", {}).values():
        _kill_group(int(child), signal.SIGKILL)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    if (STATE_DIR / "node" / "host-state.json").exists():  # the server died before its teardown
        done = realnode.clean_host_if_free(STATE_DIR / "node")
        for line in done if done is not None else ["skipped: another real node holds the lock"]:
            print(f"real node teardown: {line}")
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    print("local control plane stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane in the background (state in .data/)")
    up.add_argument("--nodes", type=int, default=2, help="fake kwok nodes (default 2)")
    up.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C stops it")
    up.add_argument(
        "--real-node",
        action="store_true",
        help="add a real node: containerd + kubelet running the project's image (needs root)",
    )
    sub.add_parser("down", help="stop the control plane started by `up`")
    serve = sub.add_parser("_serve")  # internal: the daemon half of `up`
    serve.add_argument("--nodes", type=int, default=2)
    serve.add_argument("--ready-fd", type=int)
    serve.add_argument("--real-node", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return _up(args.nodes, args.foreground, args.real_node)
        if args.command == "down":
            return _down()
        return _serve(args.nodes, args.ready_fd, args.real_node)
    except (ToolsMissingError, ClusterStartError, realnode.RealNodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
