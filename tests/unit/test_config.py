"""Settings precedence (CLI > env > file > defaults) and errors that name the setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from media_server.config import (
    CanarySettings,
    ConfigError,
    EngineSettings,
    IngestSettings,
    RuntimeSettings,
    TranscodeSettings,
    WebRTCSettings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MEDIA_SERVER_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = load_settings()
    assert (s.host, s.port, s.demo) == ("127.0.0.1", 8080, True)
    assert s.webrtc.ice_servers == []  # never a public STUN server by default


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "port: 9001\nhost: 127.0.0.2\ningest:\n  transport: udp\n")
    assert load_settings(path).port == 9001
    monkeypatch.setenv("MEDIA_SERVER_PORT", "9002")
    s = load_settings(path)
    assert (s.port, s.host, s.ingest.transport) == (9002, "127.0.0.2", "udp")
    monkeypatch.setenv("MEDIA_SERVER_INGEST__TRANSPORT", "tcp")
    assert load_settings(path).ingest.transport == "tcp"
    assert load_settings(path, port=9003).port == 9003


def test_contract_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDIA_SERVER_AUTH__TOKENS", '["token-one", "token-two"]')
    monkeypatch.setenv("MEDIA_SERVER_REGISTRY__PATH", str(tmp_path / "r.sqlite3"))
    s = load_settings()
    assert s.auth.tokens == ["token-one", "token-two"]
    assert s.registry.path == tmp_path / "r.sqlite3"


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("MEDIA_SERVER_PORT", "99999", "'port'"),
        ("MEDIA_SERVER_INGEST__TRANSPORT", "sctp", "'ingest.transport'"),
        ("MEDIA_SERVER_HUB__VIEWER_QUEUE", "1", "'hub.viewer_queue'"),
    ],
)
def test_bad_env_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_unparseable_env_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIA_SERVER_AUTH__TOKENS", "notjson")
    with pytest.raises(ConfigError, match="auth"):
        load_settings()


def test_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'ingest\.nope'"):
        load_settings(write(tmp_path, "ingest:\n  nope: 1\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "port: [\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")


def test_shipped_config_file_is_valid() -> None:
    s = load_settings(ROOT / "config" / "media_server.yaml")
    assert s.port == 8080
    # The file documents the defaults: where PHASES.md moves one, the file moves with it.
    assert s.ingest == IngestSettings() and s.webrtc == WebRTCSettings()
    assert s.transcode == TranscodeSettings() and s.engine == EngineSettings()
    assert s.canary == CanarySettings() and s.runtime == RuntimeSettings()


def test_cli_refuses_bad_setting_with_its_name() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "media_server", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "invalid setting 'port'" in proc.stderr


def test_cluster_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIA_SERVER_REGISTRY__BACKEND", "redis")
    with pytest.raises(ConfigError, match=r"cluster\.secret is needed"):
        load_settings()
    monkeypatch.setenv("MEDIA_SERVER_CLUSTER__SECRET", "0123456789abcdef")
    monkeypatch.setenv("MEDIA_SERVER_CLUSTER__LEASE_TTL", "2")
    with pytest.raises(ConfigError, match="at least 3 heartbeats"):
        load_settings()
    monkeypatch.setenv("MEDIA_SERVER_CLUSTER__LEASE_TTL", "8")
    monkeypatch.setenv("MEDIA_SERVER_CLUSTER__ADVERTISE_URL", "10.0.0.5:8080")
    with pytest.raises(ConfigError, match=r"cluster\.advertise_url"):
        load_settings()
    monkeypatch.setenv("MEDIA_SERVER_CLUSTER__ADVERTISE_URL", "http://10.0.0.5:8080")
    settings = load_settings()
    assert settings.registry.backend == "redis" and settings.cluster.lease_ttl == 8


def test_old_transports_names_work_for_one_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """transports.* was four things; the old names still set the new ones, with a note."""
    monkeypatch.setenv("MEDIA_SERVER_TRANSPORTS__PASSTHROUGH", "aiortc")
    monkeypatch.setenv("MEDIA_SERVER_TRANSPORTS__ENGINE_LANES", "3")
    monkeypatch.setenv("MEDIA_SERVER_TRANSPORTS__READ_TIMEOUT", "interpreter")
    monkeypatch.setenv("MEDIA_SERVER_ENGINE__GSO", "false")
    settings = load_settings(demo=False)
    assert settings.webrtc.media_path == "aiortc"
    assert settings.engine.lanes == 3 and settings.engine.gso is False
    assert settings.ingest.stall_check == "interpreter"
    assert any("transports.passthrough is now webrtc.media_path" in n for n in settings.renamed)
    monkeypatch.setenv("MEDIA_SERVER_WEBRTC__MEDIA_PATH", "engine")  # the new name wins
    assert load_settings(demo=False).webrtc.media_path == "engine"
    monkeypatch.setenv("MEDIA_SERVER_TRANSPORTS__WARP", "9")
    with pytest.raises(ConfigError, match=r"transports\.warp: unknown setting"):
        load_settings(demo=False)


def test_old_names_in_the_file(tmp_path: Path) -> None:
    config = tmp_path / "old.yaml"
    config.write_text(
        "transports:\n  transcode: per_viewer\n  canary: shared\n  canary_percent: 5\n"
    )
    settings = load_settings(config, demo=False)
    assert settings.transcode.encode == "per_viewer"
    assert settings.canary.choice == "shared" and settings.canary.percent == 5


def test_the_shipped_config_file_lists_every_limit_and_http_setting() -> None:
    import yaml

    from media_server.config import HttpSettings, LimitsSettings

    shipped = yaml.safe_load((ROOT / "config" / "media_server.yaml").read_text())
    assert set(shipped["limits"]) == set(LimitsSettings.model_fields)
    assert set(shipped["http"]) == set(HttpSettings.model_fields)


def test_trusted_proxies_are_addresses_or_networks() -> None:
    assert load_settings(demo=False, http={"trusted_proxies": ["10.0.0.0/8", "::1"]})
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(demo=False, http={"trusted_proxies": ["proxy.example"]})


def test_the_shipped_config_file_states_the_source_rules() -> None:
    import yaml

    from media_server.config import SourcesSettings

    shipped = yaml.safe_load((ROOT / "config" / "media_server.yaml").read_text())
    assert set(shipped["sources"]) == set(SourcesSettings.model_fields)
    assert load_settings(ROOT / "config" / "media_server.yaml").sources == SourcesSettings()
