"""JSON codecs for the signaling path: the standard library, or orjson."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CODECS = ("stdlib", "orjson")


@dataclass(frozen=True)
class JsonCodec:
    name: str
    loads: Callable[[str | bytes], Any]
    dumps: Callable[[Any], str]


def json_codec(name: str) -> JsonCodec:
    if name == "orjson":
        import orjson

        def dumps(value: Any) -> str:
            return orjson.dumps(value).decode()

        return JsonCodec("orjson", orjson.loads, dumps)
    if name == "stdlib":
        return JsonCodec("stdlib", json.loads, json.dumps)
    raise ValueError(f"unknown JSON codec {name!r}; known: {', '.join(CODECS)}")
