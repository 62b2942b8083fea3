"""A real node for the local control plane: Debian's containerd and runc, and our kubelet.

tests/support/cluster.py starts it after the control plane when asked (`real_node=True`). It runs
the project's image (hack/build-image.sh) as real containers, so the commands, probes, signals and
cgroup limits of a Pod are the real thing, where kwok's fake nodes only pretend.

Networking stays on interfaces the runner makes: a Linux bridge (BRIDGE) with the gateway address
GATEWAY_IP, which is also the node's InternalIP. The apiserver reaches the kubelet there, and Pods
(bridge CNI, host-local IPAM from POD_SUBNET) reach services the tests start on GATEWAY_IP, such
as Redis and PostgreSQL. No iptables rule, no masquerade, no route to anywhere else.

Everything the node writes lives under its directory (containerd's root, state, socket and netns
mounts; the kubelet's root-dir, certificates and Pod logs; CNI's IPAM data), except what the
kubelet and the runtime put on the host whatever they are told. HostState records the host as it
was before the start, and clean_host() puts it back: it kills the containers' processes and
shims, unmounts, removes the bridge and the kubepods cgroups, deletes the files and directories
that were not there before, deletes new iptables chains, and restores the sysctls the kubelet set.
Only one real node can run on a machine at a time (a kubelet owns host-wide paths and cgroups), so
the node holds a lock file in the binary cache while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

NODE_NAME = "finex-node"
BRIDGE = "finexbr0"
# Apart from the machine's own network and from the fake Pod IPs kwok hands out (10.244.0.0/16).
POD_SUBNET = "10.89.0.0/24"
GATEWAY_IP = "10.89.0.1"
PREFIX_LEN = 24
#: Names the images are imported under (hack/build-image.sh writes the tars).
WORKERS_IMAGE_BASE = "docker.io/library/finex-workers"
PAUSE_IMAGE = "localhost/finex-pause:1"
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
#: The kubelet's PATH: mount and friends, but not /usr/sbin's iptables (cluster.py says why).
KUBELET_PATH = "/usr/local/bin:/usr/bin:/bin"

#: What the kubelet sets on start (container manager "kernel tunables"); restored on teardown.
SYSCTLS = (
    "kernel/panic",
    "kernel/panic_on_oops",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
#: Host paths the kubelet, containerd, runc or CNI may create whatever their configured
#: directories. Those absent before the start are removed on teardown.
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/var/run/netns",
    "/run/netns",
    "/var/lib/cni",
    "/etc/cni",
    "/opt/cni",
    "/opt/containerd",
    "/var/lib/containerd",
    "/etc/kubernetes",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
IPTABLES_TABLES = ("filter", "nat", "mangle")


class RealNodeError(RuntimeError):
    """The real node cannot start here; the message says what to install or stop."""


def images_dir() -> Path:
    """Where hack/build-image.sh puts the image tars (IMAGE_CACHE, else $K8S_CACHE/images)."""
    if os.environ.get("IMAGE_CACHE"):
        return Path(os.environ["IMAGE_CACHE"])
    cache = os.environ.get("K8S_CACHE") or str(Path.home() / ".cache" / "finex" / "k8s")
    return Path(cache) / "images"


def lock_path() -> Path:
    cache = os.environ.get("K8S_CACHE") or str(Path.home() / ".cache" / "finex" / "k8s")
    return Path(cache) / ".real-node.lock"


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, text=True, capture_output=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


# --- the host before the start ----------------------------------------------------------------


@dataclass
class HostState:
    """The host as it was before the node started: what clean_host() restores to."""

    node_dir: str
    sysctls: dict[str, str] = field(default_factory=dict)
    absent_paths: list[str] = field(default_factory=list)
    bridge_created: bool = False
    cgroups_absent: list[str] = field(default_factory=list)
    iptables_chains: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def record(cls, node_dir: Path) -> HostState:
        state = cls(node_dir=str(node_dir))
        for key in SYSCTLS:
            value = _read(Path("/proc/sys") / key)
            if value is not None:
                state.sysctls[key] = value.strip()
        state.absent_paths = [p for p in HOST_PATHS if not os.path.lexists(p)]
        state.cgroups_absent = [
            str(d / KUBEPODS) for d in _cgroup_hierarchies() if not (d / KUBEPODS).exists()
        ]
        state.iptables_chains = _iptables_chains()
        return state

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> HostState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def _cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy: the v1 controllers, name=systemd and cgroup2 'unified'."""
    if not CGROUP_ROOT.is_dir():
        return []
    return sorted(d for d in CGROUP_ROOT.iterdir() if d.is_dir() and not d.is_symlink())


def _iptables_chains() -> dict[str, list[str]]:
    """{"iptables:nat": [chains], ...} for the tools present; empty when iptables is absent."""
    chains: dict[str, list[str]] = {}
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in IPTABLES_TABLES:
            proc = _run([tool, "-w", "-t", table, "-S"], check=False)
            if proc.returncode == 0:
                chains[f"{tool}:{table}"] = [
                    line.split()[1] for line in proc.stdout.splitlines() if line.startswith("-N ")
                ]
    return chains


# --- what the node leaves behind ---------------------------------------------------------------


def _pids() -> Iterable[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def leftover_processes(node_dir: Path) -> list[int]:
    """Processes of the node: shims and tools naming node_dir, and anything in kubepods cgroups."""
    found = []
    marker = str(node_dir).encode()
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if marker in cmdline or f"/{KUBEPODS}" in cgroups:
            found.append(pid)
    return found


def leftover_mounts(node_dir: Path) -> list[str]:
    """Mount points under node_dir, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(node_dir) or point.startswith(f"{node_dir}/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def bridge_exists() -> bool:
    return Path("/sys/class/net", BRIDGE).exists()


def clean_host(node_dir: Path) -> list[str]:
    """Put the host back as HostState recorded it; returns what it had to do (for the log).

    Safe to call twice and after a hard kill of the runner (the state is read from node_dir).
    """
    state = HostState.load(node_dir / "host-state.json")
    done: list[str] = []
    for attempt in range(3):  # a killed process's mounts and cgroups go a moment later
        pids = leftover_processes(node_dir)
        names = sorted({(_read(Path(f"/proc/{pid}/comm")) or "?").strip() for pid in pids})
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if pids:
            done.append(f"killed {len(pids)} processes ({', '.join(names)})")
            time.sleep(0.3 * (attempt + 1))
        for point in leftover_mounts(node_dir):
            if _run(["umount", point], check=False).returncode != 0:
                _run(["umount", "-l", point], check=False)
            done.append(f"unmounted {point}")
        if not leftover_processes(node_dir) and not leftover_mounts(node_dir):
            break
    if state is None:
        return done
    if state.bridge_created and bridge_exists():
        _run(["ip", "link", "del", BRIDGE], check=False)
        done.append(f"deleted bridge {BRIDGE}")
    for top in state.cgroups_absent:
        _remove_cgroup_tree(Path(top), done)
    for path in state.absent_paths:
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(path)
            done.append(f"removed {path}")
    for key, value in state.sysctls.items():
        sysctl = Path("/proc/sys") / key
        if (_read(sysctl) or "").strip() != value:
            with contextlib.suppress(OSError):
                sysctl.write_text(value + "\n")
            done.append(f"restored {key.replace('/', '.')}={value}")
    for key, chains in _iptables_chains().items():
        new = [c for c in chains if c not in state.iptables_chains.get(key, [])]
        if new:
            _delete_chains(key, new)
            done.append(f"deleted {key} chains {', '.join(new)}")
    return done


def _delete_chains(key: str, chains: list[str]) -> None:
    """Delete the rules that jump to the chains, then flush and delete the chains."""
    tool, table = key.split(":")
    for line in _run([tool, "-w", "-t", table, "-S"], check=False).stdout.splitlines():
        words = shlex.split(line)  # comments are quoted
        if words[:1] == ["-A"] and any(f"-j {c}" in line for c in chains):
            _run([tool, "-w", "-t", table, "-D", *words[1:]], check=False)
    for chain in chains:
        _run([tool, "-w", "-t", table, "-F", chain], check=False)
    for chain in chains:
        _run([tool, "-w", "-t", table, "-X", chain], check=False)


def _remove_cgroup_tree(top: Path, done: list[str]) -> None:
    if not top.is_dir():
        return
    # Children first; a cgroup directory is removed with rmdir once no task is in it.
    dirs = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True)
    for d in dirs:
        with contextlib.suppress(OSError):
            d.rmdir()
    if not top.exists():
        done.append(f"removed cgroup {top}")


# --- configuration files -----------------------------------------------------------------------


def containerd_config(node_dir: Path) -> str:
    """containerd 1.6 (config version 2) with every path under node_dir.

    restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and without it every sandbox fails
    with "can't get final child's PID from pipe: EOF". netns_mounts_under_state_dir keeps the
    Pods' network namespaces out of /var/run/netns.
    """
    d = node_dir / "containerd"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{d / "root"}"
state = "{d / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{socket_path(node_dir)}"

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "runc"
  Root = "{d / "runc"}"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{node_dir / "cni" / "net.d"}"
  max_conf_num = 1
"""


def socket_path(node_dir: Path) -> Path:
    return node_dir / "containerd" / "containerd.sock"


def cni_conflist(node_dir: Path) -> dict[str, Any]:
    """bridge + host-local + loopback. No ipMasq and no portmap: no iptables rule at all."""
    return {
        "cniVersion": "1.0.0",
        "name": "finex-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY_IP}]],
                    "routes": [{"dst": POD_SUBNET}],
                    "dataDir": str(node_dir / "cni" / "ipam"),
                },
            },
            {"type": "loopback"},
        ],
    }


@dataclass(frozen=True)
class KubeletFiles:
    """Paths the kubelet configuration refers to."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path


def kubelet_config(
    node_dir: Path, files: KubeletFiles, port: int, healthz_port: int
) -> dict[str, Any]:
    """KubeletConfiguration for this machine: cgroup v1 (cgroupfs), no swap check, no DNS.

    Authentication is by client certificate from the cluster CA only (the apiserver has one for
    logs and exec), so AlwaysAllow authorization admits nobody without one.
    """
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": GATEWAY_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(files.serving_cert),
        "tlsPrivateKeyFile": str(files.serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(files.ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{socket_path(node_dir)}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(node_dir / "pod-logs"),
        # An empty resolv.conf: Pods get no DNS (there is no cluster DNS, and the host's resolver
        # is outside the interfaces the tests made).
        "resolvConf": str(node_dir / "resolv.conf"),
        "registerNode": True,
        "serializeImagePulls": False,
        # The images are imported, never pulled, and must not be garbage-collected.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "maxPods": 50,
        "nodeStatusReportFrequency": "10s",
    }


# --- the host-wide lock and the bridge ---------------------------------------------------------


class HostLock:
    """One real node per machine: an exclusive flock held while the node runs."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        path = lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise RealNodeError(
                f"another real node runs on this machine (lock {path}, pid {owner}); a kubelet "
                "owns host-wide paths and cgroups, so stop that cluster first (make cluster-down)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def clean_host_if_free(node_dir: Path) -> list[str] | None:
    """clean_host() for a node whose runner died, unless another real node runs right now.

    clean_host() kills whatever is in kubepods cgroups, which would hit the live node's Pods, so
    it runs only while this process can take the lock. None means it was left for later.
    """
    lock = HostLock()
    try:
        lock.acquire()
    except RealNodeError:
        return None
    try:
        return clean_host(node_dir)
    finally:
        lock.release()


def create_bridge() -> None:
    """The Pods' bridge with the gateway address: the node IP, and where host services listen."""
    if bridge_exists():
        raise RealNodeError(
            f"a network interface {BRIDGE} already exists; it is left by an earlier run or "
            f"belongs to something else. Check `ip addr show {BRIDGE}` and delete it "
            f"(`ip link del {BRIDGE}`) if it is ours"
        )
    for line in _run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        if f" {GATEWAY_IP.rsplit('.', 1)[0]}." in line:
            raise RealNodeError(f"{POD_SUBNET} is already in use on this machine: {line.strip()}")
    _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    _run(["ip", "addr", "add", f"{GATEWAY_IP}/{PREFIX_LEN}", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])


def require_host_tools() -> None:
    """The Debian packages the node needs (hack/bootstrap.sh installs them)."""
    missing = [t for t in ("containerd", "ctr", "runc", "ip") if shutil.which(t) is None]
    missing += [p for p in ("bridge", "host-local", "loopback") if not (CNI_BIN_DIR / p).exists()]
    if os.geteuid() != 0:
        raise RealNodeError("the real node needs root (containerd, runc, mounts, a bridge)")
    if missing:
        raise RealNodeError(
            "the real node needs " + ", ".join(missing) + "; run `make bootstrap` "
            "(it installs containerd, runc, containernetworking-plugins and iproute2)"
        )


def image_tars() -> dict[str, Path]:
    """{"workers": tar, "pause": tar} as built by `make image`, or RealNodeError."""
    tars = {"workers": images_dir() / "finex-workers.tar", "pause": images_dir() / "pause.tar"}
    missing = [str(p) for p in tars.values() if not p.exists()]
    if missing:
        raise RealNodeError(
            "the images are not built: " + ", ".join(missing) + " missing; run `make image` "
            "(hack/build-image.sh)"
        )
    return {k: p.resolve() for k, p in tars.items()}
