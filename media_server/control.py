"""The operator's command line: `media-server streams ...` talks to a running gateway's
REST API; `media-server check-config FILE` validates a config file offline.

Output is for people, or JSON with `--json`. Exit codes scripts can rely on:

    0  done
    1  the gateway refused (its error is printed)
    2  bad usage, or the config file is invalid
    3  the gateway could not be reached
    4  no such stream
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote

from media_server.config import ConfigError, load_settings
from media_server.model.registration import IngestClient, Mode, RtspTransport

OK, REFUSED, USAGE, UNREACHABLE, NOT_FOUND = 0, 1, 2, 3, 4
COMMANDS = ("streams", "check-config")
DEFAULT_URL = "http://127.0.0.1:8080"


class Failure(Exception):
    def __init__(self, code: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.body = body


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="media-server",
        description="Operate a running gateway (streams) or check a config file offline.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-config", help="validate a config file (offline)")
    check.add_argument("file", type=Path)
    check.add_argument("--json", action="store_true", help="machine-readable output")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("MEDIA_SERVER_URL", DEFAULT_URL),
        help=f"the gateway (env MEDIA_SERVER_URL, default {DEFAULT_URL})",
    )
    common.add_argument(
        "--token",
        default=os.environ.get("MEDIA_SERVER_TOKEN"),
        help="control-plane bearer token (env MEDIA_SERVER_TOKEN)",
    )
    common.add_argument(
        "--cafile",
        default=os.environ.get("MEDIA_SERVER_CAFILE"),
        help="CA certificate to trust for an HTTPS gateway (env MEDIA_SERVER_CAFILE)",
    )
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    streams = commands.add_parser("streams", help="list, add, remove or show streams")
    action = streams.add_subparsers(dest="action", required=True)
    action.add_parser("list", parents=[common], help="every stream with its state")
    show = action.add_parser("show", parents=[common], help="one stream in full")
    show.add_argument("id")
    remove = action.add_parser(
        "rm", parents=[common], help="remove a stream (not one from the config file)"
    )
    remove.add_argument("id")
    add = action.add_parser("add", parents=[common], help="register a camera")
    add.add_argument("source", metavar="URL", help="rtsp:// or rtsps:// URL")
    add.add_argument("--id", help="the stream's id (default: generated)")
    add.add_argument("--transport", choices=get_args(RtspTransport))
    add.add_argument("--mode", choices=get_args(Mode))
    add.add_argument("--client", choices=get_args(IngestClient), help="who reads the camera")
    add.add_argument("--on-demand", action="store_true", help="open the camera only for viewers")
    add.add_argument("--no-audio", action="store_true", help="viewers get the video only")
    return parser.parse_args(argv)


# -- check-config ------------------------------------------------------------------------
def check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file)
    except ConfigError as exc:
        errors = str(exc).splitlines()
        if args.json:
            _print_json({"file": str(args.file), "valid": False, "errors": errors})
        else:
            print(f"{args.file}: invalid", file=sys.stderr)
            for line in errors:
                print(f"  {line}", file=sys.stderr)
        return USAGE
    ids = [s.id for s in settings.streams]
    if args.json:
        _print_json({"file": str(args.file), "valid": True, "errors": [], "streams": ids})
    else:
        print(f"{args.file}: valid ({len(ids)} stream(s){': ' + ', '.join(ids) if ids else ''})")
    return OK


# -- streams -----------------------------------------------------------------------------
def _request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    request = urllib.request.Request(
        args.url.rstrip("/") + path, data=data, headers=headers, method=method
    )
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    try:
        with urllib.request.urlopen(request, timeout=args.timeout, context=context) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())
            message = error["error"]["message"]
        except (ValueError, KeyError, TypeError):
            error, message = None, f"HTTP {exc.code}"
        raise Failure(NOT_FOUND if exc.code == 404 else REFUSED, message, error) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Failure(UNREACHABLE, f"cannot reach {args.url}: {reason}") from None
    return json.loads(raw) if raw else None


def streams(args: argparse.Namespace) -> int:
    if args.action == "list":
        body = _request(args, "GET", "/api/v1/streams")
        if args.json:
            _print_json(body)
        else:
            _table(body["streams"])
    elif args.action == "show":
        stream = _request(args, "GET", f"/api/v1/streams/{quote(args.id, safe='')}")
        if args.json:
            _print_json(stream)
        else:
            for key, value in stream.items():
                print(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")
    elif args.action == "rm":
        _request(args, "DELETE", f"/api/v1/streams/{quote(args.id, safe='')}")
        if args.json:
            _print_json({"removed": args.id})
        else:
            print(f"removed {args.id}")
    else:
        registration: dict[str, Any] = {"url": args.source}
        for key in ("id", "transport", "mode", "client"):
            if getattr(args, key) is not None:
                registration[key] = getattr(args, key)
        if args.on_demand:
            registration["on_demand"] = True
        if args.no_audio:
            registration["audio"] = False
        stream = _request(args, "POST", "/api/v1/streams", registration)
        if args.json:
            _print_json(stream)
        else:
            print(f"{stream['id']}: {stream['state']} ({stream['url']})")
    return OK


#: Fields of the stream's view (StreamView) shown by `streams list`.
COLUMNS = ("id", "state", "viewers", "mode", "managed_by", "url")


def _table(rows: list[dict[str, Any]]) -> None:
    cells = [[str(row.get(c, "")) for c in COLUMNS] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(COLUMNS)]
    for line in [list(COLUMNS), *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2)
        return int(exc.code or 0)
    if args.command == "check-config":
        return check_config(args)
    try:
        return streams(args)
    except Failure as failure:
        if args.json:
            _print_json({"error": failure.body or {"message": str(failure)}, "exit": failure.code})
        else:
            print(f"media-server: {failure}", file=sys.stderr)
        return failure.code
