"""Start the GStreamer-based RTSP test server (``rtsp_server.py``) from pytest.

The server itself must run under Debian's ``/usr/bin/python3`` (python3-gi), so it
is started as a subprocess; this module only depends on the standard library.

Usage::

    with start_rtsp_server() as server:
        url = server.url("/baseline")  # rtsp://127.0.0.1:PORT/baseline
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

SERVER_SCRIPT = Path(__file__).resolve().with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
HOST = "127.0.0.1"

MOUNTS = (
    "/baseline",
    "/sdp-only",
    "/high",
    "/main-bframes",
    "/audio-only",
    "/small",
    "/clock",
    "/av-opus",
    "/av-aac",
    "/av-pcmu",
    "/av-pcma",
    "/av-sync",
    "/av-sync-aac",
)


class RtspServerError(RuntimeError):
    """The RTSP test server could not be started."""


def free_port(host: str = HOST) -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class RtspServer:
    """A running ``rtsp_server.py`` subprocess."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        port: int,
        host: str = HOST,
        stderr_file: IO[bytes] | None = None,
    ) -> None:
        self.proc = proc
        self.port = port
        self.host = host
        # stderr goes to a temp file, not a pipe: an unread pipe could fill up and
        # block the server during a long test session.
        self._stderr_file = stderr_file

    def url(self, mount: str) -> str:
        """``rtsp://HOST:PORT/<mount>``; ``mount`` may be given with or without a slash."""
        return f"rtsp://{self.host}:{self.port}/{mount.lstrip('/')}"

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        """Everything the server has written to stderr so far."""
        if self._stderr_file is None or self._stderr_file.closed:
            return ""
        # pread: the server shares this file's offset, so never seek it.
        with contextlib.suppress(OSError):
            fd = self._stderr_file.fileno()
            return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
        return ""

    def clients(self) -> int:
        """RTSP client connections open right now, as the server reports them."""
        lines = self.stderr_text().splitlines()
        return lines.count("CLIENT open") - lines.count("CLIENT close")

    def client_connections(self) -> int:
        """RTSP client connections ever opened."""
        return self.stderr_text().splitlines().count("CLIENT open")

    def terminate(self, timeout: float = 5.0) -> None:
        """SIGTERM the server (by PID), wait, and SIGKILL it if it does not exit."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server and release its pipes / files."""
        self.terminate(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._stderr_file is not None:
            self._stderr_file.close()

    def __enter__(self) -> RtspServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for the ``READY <port>`` line; return the port it reports."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no READY line within {timeout:.0f} s")
            if not sel.select(remaining):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError(f"server exited (code {proc.wait(timeout=5)}) before READY")
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
    parts = line.split()
    if len(parts) != 2 or parts[0] != "READY" or not parts[1].isdigit():
        raise ValueError(f"unexpected first line from server: {line!r}")
    return int(parts[1])


def start_rtsp_server(
    port: int | None = None, *, host: str = HOST, timeout: float = 20.0
) -> RtspServer:
    """Start ``rtsp_server.py`` on ``port`` (a free one if None) and wait until it listens.

    Raises :class:`RtspServerError` (including the server's stderr) on failure.
    The returned :class:`RtspServer` is also a context manager that stops it.
    """
    if port is None:
        port = free_port(host)
    cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(port), "--host", host]
    # Owned (and closed) by the RtspServer below, hence no context manager.
    stderr_file = tempfile.TemporaryFile(prefix="rtsp_server-", suffix=".stderr")  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            start_new_session=True,
        )
    except OSError as exc:
        stderr_file.close()
        raise RtspServerError(f"cannot run {' '.join(cmd)}: {exc}") from exc
    server = RtspServer(proc, port, host, stderr_file)
    try:
        server.port = _wait_ready(proc, timeout)
    except (TimeoutError, EOFError, ValueError) as exc:
        server.terminate()
        stderr = server.stderr_text().strip()
        server.stop()
        raise RtspServerError(
            f"RTSP test server failed to start ({' '.join(cmd)}): {exc}\n"
            f"--- stderr ---\n{stderr or '(empty)'}"
        ) from exc
    # stdout is not read again; the server prints nothing else to it.
    return server
