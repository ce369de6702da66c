"""A TCP proxy on 127.0.0.1 that can cut the network: the fault suite's stand-in for a cable.

The machine offers no network namespaces to the suite, so a replica's subscription reaches its
source through this proxy instead (``replicate add --publisher-dsn host=127.0.0.1 port=P``).
``cut(seconds)`` closes every proxied connection at once and refuses new ones (accepted, then
reset) until the time is up, or until ``resume()``; then traffic flows again. Threads only,
no asyncio: the proxy runs beside real clusters and agent threads in the same test.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator


def _reset(sock: socket.socket) -> None:
    """Close *sock* with a TCP reset (SO_LINGER 0), as a dropped link looks to the peer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Forward 127.0.0.1:``port`` to ``upstream_host``:``upstream_port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut_until = 0.0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="proxy", daemon=True)
        #: connections forwarded, refused during a cut, and cut while open
        self.accepted = self.refused = self.severed = 0

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._thread.join(5)
        self._listener.close()
        self._sever()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_cut(self) -> bool:
        return time.monotonic() < self._cut_until

    def cut(self, seconds: float) -> int:
        """Drop every open connection now and refuse new ones for *seconds*; how many dropped."""
        with self._lock:
            self._cut_until = time.monotonic() + seconds
        return self._sever()

    def resume(self) -> None:
        """End a cut now: new connections are forwarded again."""
        with self._lock:
            self._cut_until = 0.0

    def active(self) -> int:
        """Proxied connections open now (two sockets each)."""
        with self._lock:
            return len(self._open) // 2

    def _sever(self) -> int:
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            _reset(sock)
        self.severed += len(doomed) // 2
        return len(doomed) // 2

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.is_cut:
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._open |= {client, server}
            self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            mine = src in self._open
            self._open -= {src, dst}
        if mine:  # the peer closed: close the other side too
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def proxy_to(port: int) -> Iterator[TcpProxy]:
    with TcpProxy(port) as proxy:
        yield proxy
