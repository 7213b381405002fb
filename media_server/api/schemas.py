"""Request bodies, validated with pydantic; unknown fields are errors, not silently ignored."""

from __future__ import annotations

import json
import secrets
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from media_server.api.errors import ApiError
from media_server.config import STREAM_ID_PATTERN, StreamFields, validation_problems
from media_server.streams.stream import StreamSpec

Model = TypeVar("Model", bound=BaseModel)


class StreamCreate(StreamFields):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | None = Field(None, pattern=STREAM_ID_PATTERN)

    def to_spec(self) -> StreamSpec:
        stream_id = self.id or f"s-{secrets.token_hex(4)}"
        return StreamSpec(
            stream_id,
            self.url,
            self.transport,
            self.mode,
            self.on_demand,
            self.reconnect,
            self.audio,
        )


ID_RULE = "id must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"


def _describe(exc: ValidationError) -> str:
    parts = []
    for loc, message in validation_problems(exc):
        where = ".".join(str(p) for p in loc) or "body"
        parts.append(f"{where}: {ID_RULE if loc == ('id',) else message}")
    return "; ".join(parts)


async def read_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported-media-type", "send the body as application/json")
    raw = await request.read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid-json", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid-json", "body is nested too deeply") from None


def parse(model: type[Model], data: Any) -> Model:
    if not isinstance(data, dict):
        raise ApiError(400, "invalid-body", "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid-body", _describe(exc)) from None
