"""A private network namespace for tests that must show an address is never contacted.

Inside it, an address such as 169.254.169.254 (cloud metadata) can sit on the loopback
interface with a listener on it that must see nothing; outside it, that traffic would
leave the machine. Made with iproute2 (`ip netns`, root), removed afterwards; processes
started in it are the test's own and are ended by their PID.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_names = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def namespace(*addresses: str) -> Iterator[str]:
    """A namespace with loopback up and `addresses` (CIDR) on it; yields its name."""
    name = f"mstest-{os.getpid()}-{next(_names)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        for address in addresses:
            _ip("-n", name, "addr", "add", address, "dev", "lo")
        yield name
    finally:
        _ip("netns", "del", name)


def run_in(name: str, module: str, *args: str, timeout: float = 180) -> str:
    """Run `python -m module args` in the namespace (from the project's root); its
    standard output, or the failure with its standard error."""
    proc = subprocess.run(
        ["ip", "netns", "exec", name, sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    if proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout
