"""Live reload of the config file: on SIGHUP, or when the file changes if watched.

The file is read and validated as a whole, as at start-up; a file that does not load
changes nothing (the error is logged and the running configuration stays). What loads
is applied as a difference: the file's streams are added, removed or restarted, the
others and their viewers are left alone, and the TLS certificate is read again. Other
settings take effect at the next start, and the log says which ones differ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from media_server.config import ConfigError, Settings
from media_server.streams.manager import StreamManager
from media_server.tls import ServerTls

log = logging.getLogger(__name__)

#: Seconds between looks at a watched file.
WATCH_INTERVAL = 1.0


class Reloader:
    def __init__(
        self,
        path: Path | None,
        load: Callable[[], Settings],
        settings: Settings,
        streams: StreamManager,
        tls: ServerTls | None = None,
    ) -> None:
        self._path = path
        self._load = load
        self._running = settings
        self._streams = streams
        self._tls = tls
        self._lock = asyncio.Lock()

    async def reload(self) -> bool:
        """Apply the file as it is now; False when it was refused."""
        async with self._lock:
            try:
                settings = self._load()
                if self._tls is not None:
                    ServerTls.check(settings.tls)  # before anything changes
                changes = await self._streams.apply_config(settings.streams)
                if self._tls is not None:
                    self._tls.reload(settings.tls)
            except (ConfigError, OSError, ValueError) as exc:
                log.error("reload refused, the running configuration stays: %s", exc)
                return False
            log.info(
                "reloaded %s: %d stream(s) added %s, %d removed %s, %d restarted %s, %d unchanged",
                self._path or "the settings",
                len(changes.added),
                changes.added,
                len(changes.removed),
                changes.removed,
                len(changes.changed),
                changes.changed,
                changes.unchanged,
            )
            waiting = [
                name
                for name in Settings.model_fields
                if name not in ("streams", "watch_config")
                and not (name == "tls" and self._tls is not None)  # reloaded above
                and getattr(settings, name) != getattr(self._running, name)
            ]
            if waiting:
                log.warning("settings changed that take effect at the next start: %s", waiting)
            return True

    async def watch(self) -> None:
        """Reload whenever the file's modification time or size changes."""
        if self._path is None:
            return
        seen = _stamp(self._path)
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            stamp = _stamp(self._path)
            if stamp != seen:
                seen = stamp
                await self.reload()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size
