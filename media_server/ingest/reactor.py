"""One thread reads every native RTSP session (`ingest.native_reader: loop`).

A thread per session wakes for its own socket several times a frame and takes its turn
at the GIL each time: at 100 cameras that cost four times what one thread waiting on all
the sockets (epoll) costs for the same work (PHASES.md, perf/native_readers.py). Each
stream's worker thread still opens its session (a blocking handshake), then hands it
here and waits; what a session delivers is handled on this thread when it is light
(passthrough), and goes back to its worker's thread when it is not (decoding).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from media_server.ingest.source import Polled
from media_server.model.media import SourcePacket
from media_server.procstat import name_thread

log = logging.getLogger(__name__)

#: The longest the thread sleeps when no session has anything due sooner.
IDLE = 1.0
#: Seconds `remove` waits for the reactor to let go of a session's sockets.
LET_GO = 5.0


@dataclass(eq=False)
class Entry:
    """A session on the reactor: who takes its packets and who hears it end (both called
    on the reactor's thread)."""

    source: Polled
    deliver: Callable[[list[SourcePacket]], None]
    ended: Callable[[BaseException], None]
    deadline: float = 0.0
    sockets: list[socket.socket] = field(default_factory=list)
    done: bool = False


class Reactor:
    def __init__(self, nice: int = 0) -> None:
        self._nice = nice
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ, None)
        self._commands: deque[Callable[[], None]] = deque()
        self._entries: set[Entry] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._due = 0.0  # the earliest deadline of any session, or a bound on it

    # -- any thread ------------------------------------------------------------------
    def add(self, entry: Entry) -> None:
        """Read the entry's session from now on."""
        self._call(lambda: self._register(entry))

    def remove(self, entry: Entry) -> None:
        """Stop reading `entry`; returns once the reactor has let go of its sockets, so
        the caller may close them."""
        released = threading.Event()

        def release() -> None:
            self._unregister(entry)
            released.set()

        self._call(release)
        if not released.wait(LET_GO):  # only a reactor gone wrong could keep it
            log.error("ingest reactor: a session was not let go of in %.0f s", LET_GO)

    def _call(self, command: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ingest-native", daemon=True)
                self._thread.start()
            self._commands.append(command)
        with contextlib.suppress(BlockingIOError):  # a wake is pending already
            self._wake_out.send(b"\0")

    # -- the reactor's thread ----------------------------------------------------------
    def _register(self, entry: Entry) -> None:
        try:
            entry.sockets = entry.source.sockets()
            for sock in entry.sockets:
                self._selector.register(sock, selectors.EVENT_READ, entry)
        except (OSError, ValueError) as exc:  # closed already
            self._end(entry, exc)
            return
        self._entries.add(entry)
        # What came with the replies of the handshake may hold the first frames already.
        self._poll(entry, entry.sockets[0], time.monotonic())

    def _unregister(self, entry: Entry) -> None:
        entry.done = True
        self._entries.discard(entry)
        for sock in entry.sockets:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(sock)
        entry.sockets = []

    def _end(self, entry: Entry, exc: BaseException) -> None:
        self._unregister(entry)
        entry.ended(exc)

    def _run(self) -> None:
        name_thread("ingest-native")
        if self._nice:  # as the per-stream threads are (IngestWorker)
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        while True:
            events = self._selector.select(max(0.0, min(self._due - time.monotonic(), IDLE)))
            now = time.monotonic()
            for key, _ in events:
                entry = key.data
                if entry is None:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_in.recv(4096)
                elif not entry.done:
                    self._poll(entry, key.fileobj, now)  # type: ignore[arg-type]
            while self._commands:
                self._commands.popleft()()
            if now >= self._due:  # only then look through every session
                self._due = now + IDLE
                for entry in [e for e in self._entries if e.deadline <= now]:
                    self._poll(entry, None, now)
                for entry in self._entries:
                    self._due = min(self._due, entry.deadline)

    def _poll(self, entry: Entry, ready: socket.socket | None, now: float) -> None:
        try:
            packets = entry.source.poll(ready, now)
            if packets:
                entry.deliver(packets)
            entry.deadline = entry.source.deadline()
            self._due = min(self._due, entry.deadline)
        except Exception as exc:  # the session is over (or a bug): its worker decides
            self._end(entry, exc)
