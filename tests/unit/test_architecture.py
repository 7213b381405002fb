"""The layering holds: the vocabulary at the bottom imports nothing of ours, sources and
stores never reach up into streams, and no package imports a package that imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import media_server

ROOT = Path(media_server.__file__).parent


def _imports(path: Path) -> set[str]:
    """The media_server modules a file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith("media_server.")}
    return found


def _package(module: str) -> str:
    return module.split(".")[1].removesuffix(".py")


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        source = path.relative_to(ROOT).parts[0].removesuffix(".py")
        for module in _imports(path):
            target = _package(module)
            if target != source:
                graph[source].add(target)
    return graph


def test_the_vocabulary_imports_nothing_of_ours() -> None:
    for path in (ROOT / "model").glob("*.py"):
        assert _imports(path) == set(), f"{path.name} imports {_imports(path)}"


def test_no_package_imports_one_that_imports_it() -> None:
    graph = package_graph()
    mutual = sorted(
        {
            tuple(sorted((a, b)))
            for a, targets in graph.items()
            for b in targets
            if a in graph.get(b, ())
        }
    )
    assert mutual == []


def test_sources_and_stores_do_not_reach_up_into_streams() -> None:
    graph = package_graph()
    for package in ("ingest", "store", "codecs", "model"):  # each of these is in the graph
        assert not graph[package] & {"streams", "webrtc", "engine", "cluster", "api"}, package
    assert not graph["store"] & {"ingest"}


def test_storing_a_row_loads_neither_pyav_nor_ingest() -> None:
    code = (
        "import sys, media_server.store.sqlite, media_server.store.redis;"
        "print(sorted(m for m in sys.modules if m == 'av' or m.startswith("
        "('media_server.ingest', 'media_server.streams'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_streams_use_ingest_and_store_only_through_their_interfaces() -> None:
    """The stream package may import `media_server.ingest` (its re-exported interface)
    and the registry protocol, nothing of how sources or stores do their work."""
    allowed = {"media_server.ingest", "media_server.store.registry"}
    for path in (ROOT / "streams").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.startswith(("media_server.ingest", "media_server.store")):
                    assert module in allowed, f"{path.name} imports {module}"
