"""The OpenAPI 3.1 description of the REST API, served at /api/v1/openapi.json.

Request schemas come from the pydantic models that validate the requests, so the two
cannot drift; a test compares the paths with the app's routes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from media_server import __version__
from media_server.api.admin import ProfileRequest
from media_server.api.streams import ViewerToken, ViewerTokenRequest
from media_server.model.registration import NewRegistration
from media_server.streams.view import StreamView

routes = web.RouteTableDef()

JSON = "application/json"

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

NODES = {
    "type": "object",
    "required": ["backend", "node", "nodes"],
    "properties": {
        "backend": {"enum": ["sqlite", "redis"]},
        "node": {"type": "string"},
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "capacity", "ingests", "viewers", "self"],
                "properties": {
                    "id": {"type": "string"},
                    "url": {"type": ["string", "null"], "description": "for the other nodes"},
                    "public_url": {"type": ["string", "null"], "description": "for viewers"},
                    "capacity": {"type": "integer", "description": "streams it may ingest"},
                    "ingests": {"type": "integer"},
                    "viewers": {"type": "integer"},
                    "cpu_percent": {"type": "number"},
                    "started_at": {"type": ["number", "null"]},
                    "age": {
                        "type": ["number", "null"],
                        "description": "seconds since its last heartbeat",
                    },
                    "self": {"type": "boolean"},
                },
            },
        },
    },
}


def _errors(*statuses: int) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Error"}
    return {str(s): {"description": "error", "content": {JSON: {"schema": ref}}} for s in statuses}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


STREAM_ID = {
    "name": "stream_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
}
SESSION_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
STREAM_REF = {"$ref": "#/components/schemas/Stream"}
OPEN: list[dict[str, list[str]]] = []  # no credentials needed


def _stream_paths() -> dict[str, Any]:
    """Registering, listing, showing and removing streams."""
    return {
        "/api/v1/streams": {
            "get": {
                "summary": "List the streams",
                "responses": {
                    "200": _json(
                        "the streams",
                        {
                            "type": "object",
                            "properties": {"streams": {"type": "array", "items": STREAM_REF}},
                        },
                    ),
                    **_errors(401, 403),
                },
            },
            "post": {
                "summary": "Register a stream (idempotent per id and body)",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/StreamCreate"}}},
                },
                "responses": {
                    "201": _json("registered", STREAM_REF),
                    "200": _json("the same stream was registered already", STREAM_REF),
                    **_errors(400, 401, 403, 409, 413, 415, 429, 503),
                },
            },
        },
        "/api/v1/streams/{stream_id}": {
            "parameters": [STREAM_ID],
            "get": {
                "summary": "One stream",
                "responses": {"200": _json("the stream", STREAM_REF), **_errors(401, 403, 404)},
            },
            "delete": {
                "summary": "Remove a stream; ends its viewers and its ingest",
                "description": "409 `managed-by-config` for a stream the config file "
                "declares: it is removed by editing the file and reloading.",
                "responses": {
                    "204": {"description": "removed"},
                    **_errors(401, 403, 404, 409, 503),
                },
            },
        },
    }


RECORDED_SPANS = {
    "type": "object",
    "required": ["spans"],
    "properties": {
        "spans": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["start", "end"],
                "properties": {
                    "start": {"type": "string", "format": "date-time"},
                    "end": {"type": "string", "format": "date-time"},
                },
            },
        }
    },
}


def _viewing_paths() -> dict[str, Any]:
    """What a viewer uses: the snapshot, viewer tokens and WHEP."""
    return {
        "/api/v1/streams/{stream_id}/snapshot.jpg": {
            "get": {
                "summary": "The latest picture as a JPEG (viewer access)",
                "description": "Decoded from the last keyframe onwards; cached for a "
                "second, and made once however many ask at the same time.",
                "security": [{"bearer": []}, {}],
                "parameters": [STREAM_ID],
                "responses": {
                    "200": {
                        "description": "the picture",
                        "content": {"image/jpeg": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 403, 404, 503),
                },
            }
        },
        "/api/v1/streams/{stream_id}/recordings": {
            "parameters": [
                STREAM_ID,
                *(
                    {
                        "name": name,
                        "in": "query",
                        "required": False,
                        "description": f"ISO 8601 (UTC where it names no zone); {default}",
                        "schema": {"type": "string", "format": "date-time"},
                    }
                    for name, default in (
                        ("start", "default: a day before end"),
                        ("end", "default: now"),
                    )
                ),
            ],
            "get": {
                "summary": "The spans of time the stream's recording covers in a range",
                "description": "Segments that follow each other join into one span; a "
                "camera outage stays a gap between spans. A range is at most 31 days. "
                "Viewer access, as live viewing.",
                "security": [{"bearer": []}, {}],
                "responses": {
                    "200": _json("the spans", RECORDED_SPANS),
                    **_errors(400, 401, 403, 404),
                },
            },
        },
        "/api/v1/streams/{stream_id}/viewer-tokens": {
            "parameters": [STREAM_ID],
            "post": {
                "summary": "Issue a signed, expiring token that opens this stream",
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": ViewerTokenRequest.model_json_schema()}},
                },
                "responses": {
                    "201": _json("the token", ViewerToken.model_json_schema()),
                    **_errors(400, 401, 403, 404, 415),
                },
            },
        },
        "/api/v1/streams/{stream_id}/whep": {
            "parameters": [STREAM_ID],
            "post": {
                "summary": "WHEP: an SDP offer in, an SDP answer out",
                "security": [{"bearer": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {"application/sdp": {"schema": {"type": "string"}}},
                },
                "responses": {
                    "201": {
                        "description": "the answer; Location names the session, ETag "
                        "its ICE session, X-Media-Transport the media path it gets",
                        "content": {"application/sdp": {"schema": {"type": "string"}}},
                    },
                    **_errors(400, 401, 403, 404, 413, 415, 429, 503),
                },
            },
        },
        "/api/v1/streams/{stream_id}/whep/{session_id}": {
            "parameters": [STREAM_ID, SESSION_ID],
            "patch": {
                "summary": "WHEP: trickle ICE candidates",
                "description": "Only the principal that made the session may (the same "
                "viewer token, or where viewing needs none the same client); to anyone "
                "else it is 404. At most 20 candidates a session, none that the source "
                "guard denies (400 candidate-refused), at a socket's message rate (429).",
                "security": [{"bearer": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {"application/trickle-ice-sdpfrag": {"schema": {"type": "string"}}},
                },
                "responses": {
                    "204": {"description": "applied"},
                    **_errors(400, 401, 403, 404, 412, 415, 422, 429),
                },
            },
            "delete": {
                "summary": "WHEP: end the session (only the principal that made it)",
                "security": [{"bearer": []}, {}],
                "responses": {"200": {"description": "ended"}, **_errors(401, 403, 404)},
            },
        },
    }


TOKEN = {
    "name": "token",
    "in": "query",
    "required": False,
    "description": "a viewer token (or a control-plane token), where viewing needs one; "
    "playlists carry it into every URI they list",
    "schema": {"type": "string"},
}
VIDEO = {
    "name": "video",
    "in": "query",
    "required": False,
    "description": "h264: an H.265 stream's H.264 transcode, for a player that plays no "
    "H.265 (without it, an H.265 stream comes as hvc1); playlists carry it into every URI",
    "schema": {"type": "string", "enum": ["h264"]},
}
PLAYLIST = {"application/vnd.apple.mpegurl": {"schema": {"type": "string"}}}
MP4 = {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}


def _fmp4_paths() -> dict[str, Any]:
    """The stream's fMP4 to viewers: MSE over the signaling socket, and LL-HLS."""
    return {
        "/ws/{stream_id}": {
            "parameters": [STREAM_ID, TOKEN],
            "get": {
                "summary": "WebSocket signaling (WebRTC), or MSE over the same socket",
                "description": 'Upgrade to a WebSocket. WebRTC: send `{"type": "offer", '
                '"sdp"}`, get `{"type": "answer", "sdp", "media_transport"}`, '
                'trickle `{"type": "candidate", "candidate"}`. MSE instead of an '
                'offer: send `{"type": "mse"}` (`"opus": false` from a client that '
                'cannot play Opus in MP4, `"hevc": true` from one that plays H.265 as '
                "hvc1: else an H.265 stream comes as its H.264 transcode), get "
                '`{"type": "mse", "codecs": "<RFC 6381>"}`, then binary messages: the '
                "init segment, then a fragment per "
                "picture (and the audio since the last) from the cached keyframe on. A new "
                "picture size sends a new codecs message and init segment; a viewer that "
                "falls behind by `mse.viewer_bytes` starts again at the next keyframe. "
                '`{"type": "ping", "id"}` is answered `{"type": "pong", '
                '"id"}` at any time; errors come as `{"type": "error", "code", '
                '"message"}` and end only the request that caused them.',
                "security": [{"bearer": []}, {}],
                "responses": {
                    "101": {"description": "switching to the WebSocket protocol"},
                    **_errors(400, 401, 403, 429, 503),
                },
            },
        },
        "/hls/{stream_id}/index.m3u8": {
            "parameters": [STREAM_ID, TOKEN, VIDEO],
            "get": {
                "summary": "LL-HLS: the stream's multivariant playlist",
                "description": "Its variant is `media.m3u8` (relative, with the request's "
                "token). The first request of a stream waits for its first whole segment. An "
                "H.265 stream lists two: hvc1, then its H.264 transcode "
                "(`media.m3u8?video=h264`, made only once a player asks for it), so a player "
                "takes the one it plays; with `video=h264` the transcode alone. "
                "Cache-Control: max-age=1 (private when a header token authorized it).",
                "security": [{"bearer": []}, {}],
                "responses": {
                    "200": {"description": "the playlist", "content": PLAYLIST},
                    **_errors(400, 401, 403, 404, 503),
                },
            },
        },
        "/hls/{stream_id}/media.m3u8": {
            "parameters": [
                STREAM_ID,
                TOKEN,
                VIDEO,
                {
                    "name": "_HLS_msn",
                    "in": "query",
                    "required": False,
                    "description": "blocking reload: hold until this segment is listed",
                    "schema": {"type": "integer", "minimum": 0},
                },
                {
                    "name": "_HLS_part",
                    "in": "query",
                    "required": False,
                    "description": "with _HLS_msn: hold until this part of it is listed",
                    "schema": {"type": "integer", "minimum": 0},
                },
            ],
            "get": {
                "summary": "LL-HLS: the media playlist, with partial segments and a preload hint",
                "description": "Segments start at keyframes; parts last at most "
                "`hls.part_duration`. A blocking reload more than two segments ahead is "
                "refused (400 too-far-ahead); one not satisfied within three target "
                "durations gets 503. Cache-Control: max-age=1, a blocking reload 60.",
                "security": [{"bearer": []}, {}],
                "responses": {
                    "200": {"description": "the playlist", "content": PLAYLIST},
                    **_errors(400, 401, 403, 404, 503),
                },
            },
        },
        "/hls/{stream_id}/{name}.mp4": {
            "parameters": [
                STREAM_ID,
                TOKEN,
                VIDEO,
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "E-initV (an init segment), E-M (segment M) or E-M.P (its "
                    "part P), E the window's epoch, as the playlist names them",
                    "schema": {"type": "string"},
                },
            ],
            "get": {
                "summary": "LL-HLS: an init segment, a segment or a part (fMP4)",
                "description": "Immutable (Cache-Control: max-age=31536000, immutable). The "
                "part a preload hint names is held until it is made.",
                "security": [{"bearer": []}, {}],
                "responses": {
                    "200": {"description": "fMP4", "content": MP4},
                    **_errors(400, 401, 403, 404, 503),
                },
            },
        },
    }


def _operation_paths() -> dict[str, Any]:
    """Operating the gateway: health, metrics, events, the cluster, profiling."""
    return {
        "/api/v1/admin/profile": {
            "post": {
                "summary": "Profile the running gateway with py-spy for a few seconds",
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/ProfileRequest"}}},
                },
                "responses": {
                    "200": {
                        "description": "speedscope JSON or flamegraph SVG",
                        "content": {
                            JSON: {"schema": {"type": "object"}},
                            "image/svg+xml": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 403, 409, 415, 503),
                },
            }
        },
        "/api/v1/health": {
            "get": {
                "summary": "Liveness: fails for a while after the event loop was blocked",
                "security": OPEN,
                "responses": {
                    "200": _json("alive", {"type": "object"}),
                    "503": _json("blocked", {"type": "object"}),
                },
            }
        },
        "/api/v1/health/ready": {
            "get": {
                "summary": "Readiness with a status per component",
                "security": OPEN,
                "responses": {
                    "200": _json("ready", {"type": "object"}),
                    "503": _json("not ready (starting, draining or a component failing)", {}),
                },
            }
        },
        "/api/v1/cluster": {
            "get": {
                "summary": "The nodes of the cluster and their load (a single gateway "
                "lists itself)",
                "responses": {
                    "200": _json("this node's id, the registry backend and the nodes", NODES),
                    **_errors(401, 403),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "security": OPEN,
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
        "/api/v1/events": {
            "get": {
                "summary": "Live stream list (server-sent events)",
                "description": "text/event-stream: a `streams` event (the body of "
                "GET /api/v1/streams) at once, on every change, and at least every 2 s.",
                "responses": {
                    "200": {
                        "description": "an event stream that stays open",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 403, 429, 503),
                },
            }
        },
        "/stats": {
            "get": {
                "summary": "The numbers of /metrics as compact JSON, with process CPU and RSS",
                "responses": {
                    "200": _json("figures", {"type": "object"}),
                    **_errors(401, 403),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 403),
                },
            }
        },
    }


def build() -> dict[str, Any]:
    template = "#/components/schemas/{model}"
    create = NewRegistration.model_json_schema(ref_template=template)
    stream = StreamView.model_json_schema(ref_template=template, mode="serialization")
    definitions = create.pop("$defs", {}) | stream.pop("$defs", {})
    return {
        "openapi": "3.1.0",
        "info": {"title": "media_server", "version": __version__},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": ERROR,
                "Stream": stream,
                "StreamCreate": create,
                "ProfileRequest": ProfileRequest.model_json_schema(),
                **definitions,
            },
        },
        "paths": {
            **_stream_paths(),
            **_viewing_paths(),
            **_fmp4_paths(),
            **_operation_paths(),
        },
    }


DOCUMENT = build()


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
