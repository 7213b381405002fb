"""One registration model: the API's body, the config file and the stored row accept and
refuse alike, and equality (idempotent registration) is field by field."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from media_server.config import ConfigError, load_settings
from media_server.model.registration import NewRegistration, ReconnectPolicy, Registration
from media_server.store.registry import StoreError, decode, encode

CAMERA = {"id": "cam1", "url": "rtsp://u:p@10.0.0.1/x", "mode": "transcode", "on_demand": True}


def test_every_form_round_trips_to_the_same_registration() -> None:
    from_api = NewRegistration.model_validate(CAMERA).registration()
    from_file = load_settings(streams=[CAMERA], demo=False).streams[0]
    assert from_api == from_file == decode(encode(from_api))
    assert from_api.transport == "tcp" and from_api.reconnect is None and from_api.audio


@pytest.mark.parametrize(
    "bad",
    [
        {"url": "http://cam/x"},
        {"id": "bad id"},
        {"transport": "quic"},
        {"mode": "fast"},
        {"client": "ffmpeg"},
        {"reconnect": {"initial": 0}},
        {"extra": 1},
    ],
)
def test_every_form_refuses_alike(bad: dict[str, object]) -> None:
    body = {**CAMERA, **bad}
    with pytest.raises(ValidationError):
        NewRegistration.model_validate(body)
    with pytest.raises(ConfigError):
        load_settings(streams=[body], demo=False)
    with pytest.raises(StoreError):
        decode(json.dumps(body))


def test_the_api_body_takes_json_types_exactly_and_makes_up_an_id() -> None:
    with pytest.raises(ValidationError):
        NewRegistration.model_validate({"url": "rtsp://h/x", "on_demand": "yes"})
    made = NewRegistration.model_validate({"url": "rtsp://h/x"}).registration()
    assert made.id.startswith("s-")


def test_equality_is_every_field() -> None:
    one = Registration(id="a", url="rtsp://h/x")
    assert one == Registration(id="a", url="rtsp://h/x")
    assert one != Registration(id="a", url="rtsp://h/x", audio=False)
    assert one != Registration(id="a", url="rtsp://h/x", client="native")
    assert one != Registration(id="a", url="rtsp://h/x", reconnect=ReconnectPolicy(max=3))
    assert one.same_camera(Registration(id="b", url="rtsp://h/x"))
    assert not one.same_camera(Registration(id="b", url="rtsp://h/y"))


def test_the_cli_offers_the_models_choices_and_shows_its_fields() -> None:
    from typing import get_args

    from media_server import control
    from media_server.model.registration import IngestClient, Mode, RtspTransport
    from media_server.streams.view import StreamView

    args = control.parse_args(["streams", "add", "rtsp://h/x", "--transport", "udp"])
    assert args.transport == "udp"
    for mode in get_args(Mode):
        assert control.parse_args(["streams", "add", "rtsp://h/x", "--mode", mode]).mode == mode
    for client in get_args(IngestClient):
        args = control.parse_args(["streams", "add", "rtsp://h/x", "--client", client])
        assert args.client == client
    assert get_args(RtspTransport) == ("tcp", "udp")
    assert set(control.COLUMNS) <= set(StreamView.model_fields)
