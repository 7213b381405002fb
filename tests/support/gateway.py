"""Run the gateway (``python -m media_server``) as a subprocess for a test.

Usage::

    with run_gateway() as gw:              # demo stream on, a free port
        urlopen(f"{gw.base_url}/api/v1/streams")

    with run_gateway("--no-demo", env={"MEDIA_SERVER_LOG_LEVEL": "DEBUG"}) as gw:
        ...

The gateway's stderr (its log) goes to a temp file, never a pipe that could fill up.
If it fails to start, or anything raises inside the ``with`` block, the last lines of
that log are attached to the error (as the message of :class:`GatewayError`, or as an
exception note that pytest prints). Stopping is by PID: SIGTERM, wait, SIGKILL after 10 s.
Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import IO, Any

from tests.support.rtsp import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
TAIL_LINES = 40
#: Exit code of ``media_server`` for configuration errors, including "cannot listen".
EXIT_CONFIG_ERROR = 2


#: For a gateway that serves many tests from one address: rates that suit one client in
#: production would throttle a suite (rate limits have tests of their own).
GENEROUS = {
    "MEDIA_SERVER_LIMITS__REGISTRATIONS_PER_MINUTE": "60000",
    "MEDIA_SERVER_LIMITS__REGISTRATIONS_BURST": "10000",
    "MEDIA_SERVER_LIMITS__OFFERS_PER_MINUTE": "60000",
    "MEDIA_SERVER_LIMITS__OFFERS_BURST": "10000",
    "MEDIA_SERVER_LIMITS__SESSIONS_PER_CLIENT": "10000",
}


#: Short ingest timeouts and quick reconnects, so that camera failures show within seconds.
FAST = {
    "MEDIA_SERVER_INGEST__OPEN_TIMEOUT": "2",
    "MEDIA_SERVER_INGEST__READ_TIMEOUT": "2",
    "MEDIA_SERVER_INGEST__RECONNECT__STRATEGY": "exponential",
    "MEDIA_SERVER_INGEST__RECONNECT__INITIAL": "0.2",
    "MEDIA_SERVER_INGEST__RECONNECT__MAX": "1",
}


class GatewayError(RuntimeError):
    """The gateway could not be started (the message ends with its stderr tail)."""


class Gateway:
    """A running gateway process."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        port: int,
        stderr_file: IO[bytes],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.proc = proc
        self.port = port
        self.host = HOST
        #: For HTTPS: a client context that trusts the gateway's certificate.
        self.tls = tls
        self.base_url = f"{'https' if tls else 'http'}://{HOST}:{port}"
        self._stderr_file = stderr_file

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        """Everything the gateway has written to stderr so far."""
        if self._stderr_file.closed:
            return ""
        # pread: the child shares this file's offset, so never seek it.
        with contextlib.suppress(OSError):
            fd = self._stderr_file.fileno()
            return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
        return ""

    def stderr_tail(self, lines: int = TAIL_LINES) -> str:
        text = self.stderr_text().rstrip()
        if not text:
            return "(gateway stderr is empty)"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self, lines: int = TAIL_LINES) -> str:
        """Process status and stderr tail, for failure messages."""
        code = self.proc.poll()
        status = "running" if code is None else f"exited with code {code}"
        return (
            f"gateway pid {self.pid} on {self.base_url} ({status})\n"
            f"--- gateway stderr (last {lines} lines) ---\n{self.stderr_tail(lines)}"
        )

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        """GET ``path`` and decode the JSON body (raises ``urllib.error.HTTPError`` on 4xx/5xx)."""
        with urllib.request.urlopen(self.url(path), timeout=timeout, context=self.tls) as response:
            return json.loads(response.read())

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``GET /api/v1/health`` answers 200; GatewayError if it never does."""
        deadline = time.monotonic() + timeout
        last: object = "no answer yet"
        while time.monotonic() < deadline:
            if not self.running:
                raise GatewayError(f"the gateway exited before it was healthy\n{self.describe()}")
            try:
                health = self.url("/api/v1/health")
                with urllib.request.urlopen(health, timeout=2, context=self.tls) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                last = exc
            time.sleep(0.1)
        raise GatewayError(
            f"GET /api/v1/health did not answer 200 within {timeout:.0f} s (last: {last})\n"
            f"{self.describe()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM by PID, wait ``timeout`` s, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        self._stderr_file.close()


def _spawn(port: int, extra_args: tuple[str, ...], env: Mapping[str, str] | None) -> Gateway:
    cmd = [sys.executable, "-m", "media_server", "--port", str(port), *extra_args]
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # Owned (and closed) by the Gateway, hence no context manager here.
    stderr_file = tempfile.TemporaryFile(prefix="gateway-", suffix=".stderr")  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=stderr_file,
            stderr=stderr_file,
            env=child_env,
            start_new_session=True,  # a Ctrl-C in pytest does not hit the gateway directly
        )
    except OSError as exc:
        stderr_file.close()
        raise GatewayError(f"cannot run {' '.join(cmd)}: {exc}") from exc
    tls = None
    if env and "MEDIA_SERVER_TLS__CERT_FILE" in env:  # the test's own certificate
        tls = ssl.create_default_context(cafile=env["MEDIA_SERVER_TLS__CERT_FILE"])
    return Gateway(proc, port, stderr_file, tls)


@contextlib.contextmanager
def run_gateway(
    *extra_args: str,
    env: Mapping[str, str] | None = None,
    start_timeout: float = START_TIMEOUT,
    attempts: int = 3,
) -> Iterator[Gateway]:
    """Start the gateway on a free port, wait until healthy, yield it, stop it.

    ``extra_args`` are appended to ``python -m media_server --port P``; ``env`` is merged
    over ``os.environ``. Unless ``env`` names one, the registry is a fresh file that goes
    away with the gateway. A port lost to a race between choosing and binding it is
    retried (``attempts`` times in all).
    """
    with tempfile.TemporaryDirectory(prefix="gateway-") as scratch:
        env = {"MEDIA_SERVER_REGISTRY__PATH": f"{scratch}/registry.sqlite3", **(env or {})}
        with _run(extra_args, env, start_timeout, attempts) as gateway:
            yield gateway


@contextlib.contextmanager
def run_gateway_on(
    port: int,
    *extra_args: str,
    env: Mapping[str, str] | None = None,
    start_timeout: float = START_TIMEOUT,
) -> Iterator[Gateway]:
    """A gateway on this very port: a restart in place, as a supervisor would do it."""
    with tempfile.TemporaryDirectory(prefix="gateway-") as scratch:
        env = {"MEDIA_SERVER_REGISTRY__PATH": f"{scratch}/registry.sqlite3", **(env or {})}
        gateway = _spawn(port, extra_args, env)
        try:
            gateway.wait_healthy(start_timeout)
            yield gateway
        finally:
            gateway.close()


@contextlib.contextmanager
def _run(
    extra_args: tuple[str, ...], env: Mapping[str, str], start_timeout: float, attempts: int
) -> Iterator[Gateway]:
    gateway: Gateway | None = None
    for attempt in range(1, attempts + 1):
        gateway = _spawn(free_port(), extra_args, env)
        try:
            gateway.wait_healthy(start_timeout)
            break
        except GatewayError:
            code = gateway.proc.poll()
            lost_port = code == EXIT_CONFIG_ERROR and "cannot listen" in gateway.stderr_text()
            gateway.close()
            if not (lost_port and attempt < attempts):
                raise
    assert gateway is not None
    try:
        yield gateway
    except BaseException as exc:
        if isinstance(exc, Exception):
            exc.add_note(gateway.describe())
        raise
    finally:
        gateway.close()
