"""Which send path the engine runs: the native one when it was built, else pure Python."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from media_server.engine import srtp

log = logging.getLogger(__name__)


class TxViewer(Protocol):
    """One viewer's send state (`_fanout.Viewer` or `pysend.Viewer`)."""

    @property
    def closed(self) -> bool: ...
    def retransmit(self, seq: int, payload: bytes, timestamp: int, marker: bool, /) -> bool: ...
    def send_rtcp(self, data: bytes, /) -> bool: ...
    def lookup(self, seq: int, /) -> tuple[int, int] | None: ...
    def sender_info(self) -> tuple[int, int, int, int, int, int, int, int]: ...
    def retarget(self, fd: int, host: str, port: int, /) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class SendPath:
    name: Literal["native", "python"]
    viewer: Callable[..., TxViewer]
    send_unit: Callable[[tuple[Any, ...], tuple[bytes, ...], int, int], int]
    #: Whether sending releases the GIL, so lanes of threads can send on several cores.
    threaded: bool


NATIVE = "media_server.engine._fanout"


def native_available() -> bool:
    try:
        importlib.import_module(NATIVE)
    except ImportError:
        return False
    return True


def _native_viewer(native: Any) -> Callable[..., TxViewer]:
    """The native Viewer, given the pylibsrtp session its keys make."""

    def viewer(*, profile: int, key: bytes, **rest: Any) -> TxViewer:
        session = srtp.session(profile, key)
        tx: TxViewer = native.Viewer(session=session, srtp=srtp.context(session), **rest)
        return tx

    return viewer


def load(wanted: Literal["native", "python"]) -> SendPath:
    """The send path asked for; native falls back to Python (logged) when it was not
    built or cannot bind pylibsrtp's libsrtp."""
    if wanted == "native":
        try:
            native = importlib.import_module(NATIVE)
            native.bind(*srtp.protect_functions())
        except ImportError as exc:
            log.warning("engine: native send path unavailable (%s); using pure Python", exc)
        else:
            return SendPath("native", _native_viewer(native), native.send_unit, True)
    from media_server.engine import pysend

    return SendPath("python", pysend.Viewer, pysend.send_unit, False)
