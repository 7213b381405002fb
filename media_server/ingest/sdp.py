"""What an RTSP camera's SDP says about its media: kind, payload type, codec, clock, fmtp
and the control URL to SETUP (RFC 4566; control URLs as RFC 2326 C.1.1 resolves them)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin


@dataclass(frozen=True, slots=True)
class Media:
    kind: str  # video, audio, ...
    payload_type: int
    codec: str  # the rtpmap encoding name, lower case: h264, h265, opus, pcmu, ...
    clock_rate: int
    channels: int  # audio: the rtpmap's third field (1 when absent)
    fmtp: str
    control: str  # absolute


def _resolve(base: str, control: str) -> str:
    if control in ("", "*"):
        return base
    if control.lower().startswith(("rtsp://", "rtsps://")):
        return control
    return urljoin(base if base.endswith("/") else base + "/", control)


@dataclass(frozen=True, slots=True)
class Description:
    """A camera's SDP: the aggregate control URL (PLAY, keep-alives and TEARDOWN go
    there) and its media sections."""

    control: str
    media: list[Media]


def parse(text: str, base: str) -> Description:
    """The media sections, their control URLs resolved against `base` (Content-Base,
    Content-Location or the DESCRIBE URL) and the session's own control."""
    session_control = ""
    sections: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            fields = line[2:].split()
            current = {"kind": fields[0] if fields else "", "pt": (fields[3:4] or ["-1"])[0]}
            sections.append(current)
            continue
        if not line.startswith("a="):
            continue
        name, _, value = line[2:].partition(":")
        if name == "control":
            if current is None:
                session_control = value.strip()
            else:
                current["control"] = value.strip()
        elif name == "rtpmap" and current is not None:
            pt, _, encoding = value.partition(" ")
            current[f"rtpmap:{pt}"] = encoding.strip()
        elif name == "fmtp" and current is not None:
            pt, _, params = value.partition(" ")
            current[f"fmtp:{pt}"] = params.strip()
    root = _resolve(base, session_control)
    media = []
    for section in sections:
        pt = section["pt"]
        if not pt.isdigit():
            continue
        encoding = section.get(f"rtpmap:{pt}", "")
        name, _, rest = encoding.partition("/")
        clock, _, channels = rest.partition("/")
        media.append(
            Media(
                kind=section["kind"],
                payload_type=int(pt),
                codec=name.lower(),
                clock_rate=int(clock) if clock.isdigit() else 90_000,
                channels=int(channels) if channels.isdigit() else 1,
                fmtp=section.get(f"fmtp:{pt}", ""),
                control=_resolve(root, section.get("control", "")),
            )
        )
    return Description(root, media)
