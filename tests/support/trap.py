"""Listeners that count whatever reaches them: an address that must never be contacted
gets one, and the test asserts it saw nothing."""

from __future__ import annotations

import socket
import threading


class Trap:
    """A UDP and a TCP listener on one address and port, counting datagrams and
    connections (in threads, until closed)."""

    def __init__(self, host: str, port: int) -> None:
        self.datagrams = 0
        self.connections = 0
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((host, port))
        self._udp.settimeout(0.2)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((host, port))
        self._tcp.listen(16)
        self._tcp.settimeout(0.2)
        self._closed = threading.Event()
        self._threads = [
            threading.Thread(target=self._count_udp, daemon=True),
            threading.Thread(target=self._count_tcp, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _count_udp(self) -> None:
        while not self._closed.is_set():
            try:
                self._udp.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams += 1

    def _count_tcp(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._closed.set()
        for thread in self._threads:
            thread.join(2)
        self._udp.close()
        self._tcp.close()
