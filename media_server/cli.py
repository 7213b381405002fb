"""Command line: parse options, load settings, run the gateway until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from media_server import __version__, control
from media_server.api.connections import listen
from media_server.api.context import GATEWAY
from media_server.app import build_app, drain
from media_server.config import ConfigError, Settings, load_settings
from media_server.logs import AccessLog, setup_logging
from media_server.reload import Reloader
from media_server.runtime.gc import apply_gc_policy
from media_server.runtime.loop import loop_factory
from media_server.store.registry import StoreError
from media_server.tls import ServerTls

log = logging.getLogger("media_server")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="media-server",
        description="RTSP to WebRTC gateway. Settings: CLI > MEDIA_SERVER_* env > --config "
        "file. Operators' commands: media-server streams --help, media-server check-config "
        "FILE.",
    )
    parser.add_argument("--config", type=Path, help="YAML settings file (see config/)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the embedded demo stream 'demo' (default on)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback --host with no authentication configured (not advised)",
    )
    parser.add_argument("--version", action="version", version=f"media-server {__version__}")
    return parser.parse_args(argv)


#: Seconds an idle connection is kept open for a next request (browsers reconnect).
KEEPALIVE = 75.0


def check_exposure(settings: Settings) -> None:
    """Protected mode: beyond loopback, no authentication or no TLS is refused unless
    allowed (`--insecure` allows both; `http.allow_plain` plain HTTP behind a proxy)."""
    if settings.loopback_only:
        return
    auth = settings.auth
    authenticated = bool(auth.tokens or auth.jwt_secret or auth.jwks_file)
    if not authenticated and not auth.insecure:
        raise ConfigError(
            f"refusing to listen on {settings.host} with no authentication (protected mode): "
            "set MEDIA_SERVER_AUTH__TOKENS (or a JWT setting), or pass --insecure"
        )
    if not settings.tls.enabled and not (settings.http.allow_plain or auth.insecure):
        raise ConfigError(
            f"refusing to serve plain HTTP on {settings.host}: configure tls.cert_file and "
            "tls.key_file (MEDIA_SERVER_TLS__CERT_FILE, MEDIA_SERVER_TLS__KEY_FILE), or set "
            "http.allow_plain (MEDIA_SERVER_HTTP__ALLOW_PLAIN=true) behind a proxy that "
            "terminates TLS"
        )
    if not authenticated:
        log.warning(
            "!!! INSECURE: listening on %s with NO authentication: anyone who can reach "
            "this port can register cameras and watch every stream !!!",
            settings.host,
        )
    elif auth.viewer_tokens is False:
        log.warning(
            "viewing is open (auth.viewer_tokens: false): anyone who can reach %s can "
            "watch every stream and take its snapshots without a token",
            settings.host,
        )


async def serve(
    settings: Settings, load: Callable[[], Settings], config: Path | None = None
) -> None:
    """Run until SIGINT or SIGTERM; SIGHUP (or a change of the watched `config` file)
    reloads the settings through `load`."""
    check_exposure(settings)
    tls = ServerTls(settings.tls) if settings.tls.enabled else None
    loop = asyncio.get_running_loop()
    app = build_app(settings, loop)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout,
        access_log_class=AccessLog,
        keepalive_timeout=KEEPALIVE,
    )
    try:
        await runner.setup()
    except StoreError as exc:
        raise ConfigError(str(exc)) from None
    try:
        server = await listen(
            runner,
            settings.host,
            settings.port,
            tls.context if tls else None,
            settings.http.request_timeout,
            settings.limits.connections_per_client,
            behind_proxy=bool(settings.http.trusted_proxies),
        )
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from exc
    stop, interrupted = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:  # the first signal drains, a second one cuts the drain short
        (interrupted if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    gw = app[GATEWAY]
    reloader = Reloader(config, load, settings, gw.streams, tls)
    loop.add_signal_handler(signal.SIGHUP, lambda: gw.background.spawn(reloader.reload()))
    if settings.watch_config and config is not None:
        gw.background.spawn(reloader.watch())
    app[GATEWAY].ready = True
    base = f"{'https' if tls else 'http'}://{settings.host}:{settings.port}"
    log.info("media_server %s listening on %s", __version__, base)
    if settings.demo:
        log.info("demo stream: %s/view/demo", base)
    await stop.wait()
    log.info("stopping (signal received)")
    await drain(app[GATEWAY], interrupted)
    server.close()  # no new connections; the runner closes the open ones
    try:
        await asyncio.wait_for(runner.cleanup(), settings.shutdown_timeout + 1)
    except TimeoutError:
        log.warning("shutdown took longer than %.0f s; exiting anyway", settings.shutdown_timeout)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in control.COMMANDS:  # the operator's commands, not the server
        return control.main(argv)
    args = parse_args(argv)
    cli: dict[str, Any] = {
        key: value
        for key, value in (("host", args.host), ("port", args.port), ("demo", args.demo))
        if value is not None
    }
    if args.insecure:
        cli["auth"] = {"insecure": True}
    try:
        settings = load_settings(args.config, **cli)
    except ConfigError as exc:
        print(f"media-server: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    for note in settings.renamed:
        log.warning("%s", note)
    apply_gc_policy(settings.runtime.gc)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.runtime.loop)) as runner:
            runner.run(serve(settings, lambda: load_settings(args.config, **cli), args.config))
    except ConfigError as exc:
        print(f"media-server: {exc}", file=sys.stderr)
        return 2
    return 0
