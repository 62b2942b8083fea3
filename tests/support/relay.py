"""A TCP relay: Pods on the real node reach the loopback-only kube-apiserver through it.

The apiserver binds 127.0.0.1 only, and there is no kube-proxy, so the `kubernetes` Service's
ClusterIP leads nowhere. In-cluster clients (the operator in its Pod) are pointed instead at
GATEWAY_IP:<relay port> (KUBERNETES_SERVICE_HOST/PORT), which this relay listens on, on the bridge
the runner made. TLS passes through untouched; the apiserver's serving certificate names
GATEWAY_IP too. Threads, one pair per connection; stopped with the cluster.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    """Accept on (host, port) and pipe each connection to target, both ways."""

    def __init__(self, host: str, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self._server = socket.create_server((host, port), reuse_port=False)
        self.address: tuple[str, int] = self._server.getsockname()[:2]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="k8s-relay")
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._server.close()
