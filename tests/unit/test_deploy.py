"""The cluster examples in deploy/ stay true to the gateway: every setting they give is
one it accepts, and the probes point at its health endpoints."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from media_server.app import build_app
from media_server.cli import check_exposure
from media_server.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "cluster"
PLACEHOLDER = "a-placeholder-value-of-length"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MEDIA_SERVER_"):
            monkeypatch.delenv(key)


def _settings_accept(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        if key.startswith("MEDIA_SERVER_"):
            monkeypatch.setenv(key, value)
    settings = load_settings()  # raises ConfigError naming any setting it refuses
    assert settings.registry.backend == "redis"
    assert settings.cluster.secret
    check_exposure(load_settings(host="0.0.0.0"))  # the container listens on every address


def _env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_compose_nodes_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    common = _env_file(DEPLOY / "cluster.env.example")
    nodes = [s for name, s in compose["services"].items() if name.startswith("node-")]
    assert len(nodes) == 3
    redis = compose["services"]["redis"]["command"]
    assert "--appendonly yes" in redis and "--appendfsync always" in redis
    ids = set()
    for node in nodes:
        env = {**common, **node["environment"]}
        _settings_accept(env, monkeypatch)
        ids.add(env["MEDIA_SERVER_CLUSTER__NODE_ID"])
        assert "/api/v1/health/ready" in " ".join(node["healthcheck"]["test"])
    assert len(ids) == 3


def test_kubernetes_manifests_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    docs: list[dict[str, Any]] = [
        doc
        for name in ("redis.yaml", "gateway.yaml")
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text())
    ]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    downward = {"$(POD_IP)": "10.0.0.5", "$(POD_NAME)": "media-server-7d9f-x2x4z"}
    env = {}
    for entry in container["env"]:
        value = entry.get("value", PLACEHOLDER)
        for name, pod_value in downward.items():
            value = value.replace(name, pod_value)
        env[entry["name"]] = value
    env["MEDIA_SERVER_AUTH__TOKENS"] = f'["{PLACEHOLDER}"]'
    _settings_accept(env, monkeypatch)
    app = build_app(load_settings(demo=False), asyncio.new_event_loop())
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert {"/api/v1/health/ready", "/api/v1/health"} <= routes
    (redis,) = [d for d in docs if d["kind"] == "StatefulSet"]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:4] == ["--appendonly", "yes", "--appendfsync", "always"]
    assert {d["kind"] for d in docs} >= {"Service", "Secret", "PodDisruptionBudget"}
