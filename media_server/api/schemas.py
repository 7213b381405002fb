"""Request bodies, validated with pydantic; unknown fields are errors, not silently ignored."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from media_server.api.errors import ApiError
from media_server.config import validation_problems
from media_server.model.registration import ID_RULE

Model = TypeVar("Model", bound=BaseModel)


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
    except RecursionError:
        raise ApiError(400, "invalid-json", "body is nested too deeply") from None
    except ValueError as exc:  # not JSON, not UTF-8, or an integer too long to convert
        raise ApiError(400, "invalid-json", f"body is not valid JSON: {exc}") from None


def parse(model: type[Model], data: Any) -> Model:
    if not isinstance(data, dict):
        raise ApiError(400, "invalid-body", "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid-body", _describe(exc)) from None
