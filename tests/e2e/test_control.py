"""The operator's CLI (`media-server streams ...`, `media-server check-config`) as a
script would run it: a real process against a running gateway, exit codes and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GENEROUS, Gateway, run_gateway
from tests.support.rtsp import RtspServer, free_port

pytestmark = pytest.mark.e2e

TOKEN = "cli-test-token-0123"


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_SERVER_")}
    return subprocess.run(
        [sys.executable, "-m", "media_server", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def operated(rtsp: RtspServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = tmp_path_factory.mktemp("cli") / "media_server.yaml"
    config.write_text(f"streams:\n  - id: from-file\n    url: {rtsp.url('/small')}\n")
    env = {**GENEROUS, "MEDIA_SERVER_AUTH__TOKENS": json.dumps([TOKEN])}
    with run_gateway("--no-demo", "--config", str(config), env=env) as gw:
        yield gw


def test_check_config(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "port: 9000\nstreams:\n"
        "  - id: door\n    url: rtsp://${DOOR_USER}:${DOOR_PASSWORD}@192.0.2.7/live\n"
    )
    secrets = {"DOOR_USER": "admin", "DOOR_PASSWORD": "pw"}
    proc = cli("check-config", str(good), **secrets)
    assert proc.returncode == 0 and "valid (1 stream(s): door)" in proc.stdout, proc.stderr
    assert as_json(cli("check-config", str(good), "--json", **secrets)) == {
        "file": str(good),
        "valid": True,
        "errors": [],
        "streams": ["door"],
    }
    unset = cli("check-config", str(good), "--json")  # the password is not in the env
    assert unset.returncode == 2
    assert "DOOR_USER" in as_json(unset)["errors"][0]

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "streams:\n  - id: x\n    url: file:///etc/passwd\n  - id: x\n    url: rtsp://h/\n"
    )
    proc = cli("check-config", str(bad))
    assert proc.returncode == 2 and "invalid" in proc.stderr
    assert "streams.0.url" in proc.stderr
    report = as_json(cli("check-config", str(bad), "--json"))
    assert report["valid"] is False and report["errors"]
    missing = cli("check-config", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_streams_against_a_running_gateway(operated: Gateway, rtsp: RtspServer) -> None:
    url = {"MEDIA_SERVER_URL": operated.base_url}
    auth = {**url, "MEDIA_SERVER_TOKEN": TOKEN}

    refused = cli("streams", "list", **url)  # no token
    assert refused.returncode == 1 and "token" in refused.stderr.lower(), refused.stderr

    listed = as_json(cli("streams", "list", "--json", **auth))
    assert [s["id"] for s in listed["streams"]] == ["from-file"]
    table = cli("streams", "list", **auth)
    assert table.returncode == 0
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:2] == ["id", "state"] and row.startswith("from-file")

    added = cli("streams", "add", rtsp.url("/small"), "--id", "cli-cam", "--on-demand", **auth)
    assert added.returncode == 0 and added.stdout.startswith("cli-cam: "), added.stderr
    shown = as_json(cli("streams", "show", "cli-cam", "--json", **auth))
    assert shown["on_demand"] is True and shown["managed_by"] == "api"
    human = cli("streams", "show", "cli-cam", **auth).stdout
    assert "id: cli-cam" in human and "on_demand: True" in human

    conflict = cli("streams", "add", rtsp.url("/baseline"), "--id", "cli-cam", "--json", **auth)
    assert conflict.returncode == 1
    assert as_json(conflict)["error"]["error"]["code"] == "stream-conflict"
    bad_url = cli("streams", "add", "http://example.com/x", **auth)
    assert bad_url.returncode == 1 and "rtsp" in bad_url.stderr

    from_file = cli("streams", "rm", "from-file", **auth)
    assert from_file.returncode == 1 and "config file" in from_file.stderr
    assert cli("streams", "rm", "cli-cam", **auth).returncode == 0
    gone = cli("streams", "show", "cli-cam", **auth)
    assert gone.returncode == 4 and "no stream" in gone.stderr

    away = cli("streams", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert away.returncode == 3 and "cannot reach" in away.stderr
    usage = cli("streams", "frobnicate")
    assert usage.returncode == 2
