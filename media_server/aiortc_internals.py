"""Every use of aiortc's and aioice's private internals, in one place.

The fan-out engine takes over a viewer's video sending once aiortc's DTLS has produced
the keys: it needs the DTLS session's keying material, the ICE pair aiortc sends on, the
RTP router that hands it RTCP, and aiortc's own H.264 packetizer. The sessions read the
senders' packet counts, ICE gathering is taught a loopback candidate, and aiortc is taught
H.265 (a codec it lacks) by registration, not by a fork. None of that is
public API, so an aiortc upgrade may move any of it: each function here raises
`AiortcChanged` naming what moved, rather than failing somewhere deep in a viewer, and
tests/unit/test_aiortc_internals.py exercises each on real aiortc peers.
"""

from __future__ import annotations

import copy
import socket
import time
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any

import aioice.ice
import aiortc.codecs
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import av
from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.base import Decoder, Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint, RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.stats import RTCStatsReport
from OpenSSL import SSL

from media_server.model.media import CLOCK_RATE, TIME_BASE
from media_server.rtp.packetizer import packetize_h265
from media_server.rtp.payload import annexb_h265


class AiortcChanged(RuntimeError):
    """aiortc (or aioice) no longer has an internal the gateway relies on."""


def _get(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        owner = obj.__name__ if isinstance(obj, type | ModuleType) else type(obj).__name__
        raise AiortcChanged(f"{owner}.{name} is gone (aiortc changed)") from None


# -- DTLS: the viewer's SRTP keys --------------------------------------------------------
def srtp_keys(dtls: RTCDtlsTransport) -> tuple[int, bytes]:
    """(libsrtp profile, our transmit key and salt) from a connected DTLS session, derived
    as `RTCDtlsTransport._setup_srtp` derives them. LookupError: no profile negotiated."""
    ssl = _get(dtls, "_ssl")
    selected = ssl.get_selected_srtp_profile()
    profiles = _get(dtls, "_srtp_profiles")
    profile = next((p for p in profiles if p.openssl_profile == selected), None)
    if profile is None:
        raise LookupError("DTLS negotiated no SRTP profile")
    material = ssl.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
    )
    server = _get(dtls, "_role") == "server"
    key: bytes = profile.get_key_and_salt(material, 1 if server else 0)
    return int(profile.libsrtp_profile), key


# -- ICE: where aiortc sends ---------------------------------------------------------------
def ice_connection(dtls: RTCDtlsTransport) -> Any:
    """The aioice connection under a DTLS transport."""
    return _get(dtls.transport, "_connection")


def nominated_pair(connection: Any) -> Any | None:
    """The candidate pair ICE selected for RTP (component 1), or None."""
    return _get(connection, "_nominated").get(1)


def pair_route(pair: Any) -> tuple[int, str, int] | None:
    """(socket descriptor, remote host, remote port) of a candidate pair; None once its
    socket is closed."""
    transport = _get(_get(pair, "protocol"), "transport")
    if transport is None:
        return None
    sock: socket.socket = transport.get_extra_info("socket")
    host, port = _get(pair, "remote_addr")[:2]
    return sock.fileno(), host, port


_original_host_addresses = aioice.ice.get_host_addresses


#: Seconds a listing of the host's addresses is reused: listing the interfaces for every
#: offer was a tenth of answering one.
ADDRESSES_FRESH = 5.0
_addresses: dict[tuple[bool, bool], tuple[float, list[str]]] = {}


def _host_addresses_with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    now = time.monotonic()
    known = _addresses.get((use_ipv4, use_ipv6))
    if known is not None and now - known[0] < ADDRESSES_FRESH:
        return list(known[1])
    addresses: list[str] = list(_original_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    if use_ipv4 and "127.0.0.1" not in addresses:
        addresses.append("127.0.0.1")
    _addresses[(use_ipv4, use_ipv6)] = (now, addresses)
    return list(addresses)


def gather_loopback() -> None:
    """Make aioice gather a 127.0.0.1 host candidate as well (idempotent): it leaves
    loopback out, which strands a viewer on the same host when that is all there is."""
    _get(aioice.ice, "get_host_addresses")
    aioice.ice.get_host_addresses = _host_addresses_with_loopback


# -- answering: what aiortc makes for every peer connection, made once or when needed ----
#: How long one DTLS certificate serves every viewer before a new one is made.
CERTIFICATE_LIFETIME = 24 * 3600.0
_generate_certificate = RTCCertificate.generateCertificate
_create_ssl_context = RTCCertificate._create_ssl_context
_fingerprints = RTCCertificate.getFingerprints
_certificate: tuple[float, RTCCertificate, list[RTCDtlsFingerprint]] | None = None
_contexts: dict[tuple[int, tuple[bytes, ...]], tuple[RTCCertificate, SSL.Context]] = {}


def _shared_certificate(cls: type[RTCCertificate]) -> RTCCertificate:
    global _certificate
    now = time.monotonic()
    if _certificate is None or now - _certificate[0] >= CERTIFICATE_LIFETIME:
        made = _generate_certificate()
        _certificate = (now, made, _fingerprints(made))
        _contexts.clear()  # contexts of the old certificate
    return _certificate[1]


def _shared_fingerprints(self: RTCCertificate) -> list[RTCDtlsFingerprint]:
    if _certificate is not None and _certificate[1] is self:
        return list(_certificate[2])
    return _fingerprints(self)


def _shared_context(self: RTCCertificate, srtp_profiles: list[Any]) -> SSL.Context:
    key = (id(self), tuple(p.openssl_profile for p in srtp_profiles))
    known = _contexts.get(key)
    if known is None or known[0] is not self:
        known = _contexts[key] = (self, _create_ssl_context(self, srtp_profiles))
    return known[1]


class _LazyBitrateEstimator:
    """aiortc's receive-side bandwidth estimator for a video receiver, made when media
    first arrives: the gateway's receivers never receive any, and each would cost a
    thousand rate buckets to make (a sixth of answering an offer)."""

    def __init__(self) -> None:
        self._made: RemoteBitrateEstimator | None = None

    def add(self, *args: Any, **kwargs: Any) -> Any:
        if self._made is None:
            self._made = RemoteBitrateEstimator()
        return self._made.add(*args, **kwargs)


def answer_lightly() -> None:
    """Make answering an offer cheaper (idempotent), measured in PHASES.md: one DTLS
    certificate (its fingerprints and SSL context too) serves every viewer for a day, as
    a browser's serves its peer connections, instead of a new key pair and certificate
    signed for each; and video receivers make their bandwidth estimator on first use."""
    _get(RTCCertificate, "_create_ssl_context")
    _get(aiortc.rtcrtpreceiver, "RemoteBitrateEstimator")
    RTCCertificate.generateCertificate = classmethod(_shared_certificate)  # type: ignore[method-assign, assignment]
    RTCCertificate._create_ssl_context = _shared_context  # type: ignore[method-assign]
    RTCCertificate.getFingerprints = _shared_fingerprints  # type: ignore[method-assign]
    aiortc.rtcrtpreceiver.RemoteBitrateEstimator = _LazyBitrateEstimator  # type: ignore[attr-defined, assignment]


# -- the RTP sender: taken over by the engine -------------------------------------------
def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC) aiortc chose for a sender (and announced in the SDP)."""
    return int(_get(sender, "_ssrc")), int(_get(sender, "_rtx_ssrc"))


def sender_track_id(sender: RTCRtpSender) -> str:
    return str(_get(sender, "_track_id"))


def transport_stats_id(dtls: RTCDtlsTransport) -> str:
    return str(_get(dtls, "_stats_id"))


def take_over_sender(
    sender: RTCRtpSender,
    send: Callable[[RTCRtpSendParameters], Coroutine[Any, Any, None]],
    stop: Callable[[], Coroutine[Any, Any, None]],
    handle_rtcp: Callable[[Any], Coroutine[Any, Any, None]],
    get_stats: Callable[[], Coroutine[Any, Any, RTCStatsReport]],
) -> None:
    """Replace a sender's send loop, stop, RTCP handler and stats with the engine's."""
    _get(sender, "_handle_rtcp_packet")
    sender.send = send  # type: ignore[method-assign, assignment]
    sender.stop = stop  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign, assignment]
    sender.getStats = get_stats  # type: ignore[method-assign]


def route_rtcp(dtls: RTCDtlsTransport, sender: RTCRtpSender, params: RTCRtpSendParameters) -> None:
    """Have the DTLS transport's RTP router hand RTCP for the sender's SSRCs to it."""
    _get(dtls, "_register_rtp_sender")(sender, params)


def unroute_rtcp(dtls: RTCDtlsTransport, sender: RTCRtpSender) -> None:
    _get(dtls, "_unregister_rtp_sender")(sender)


def sent_counts(sender: RTCRtpSender) -> tuple[int, int]:
    """RTP packets and payload bytes aiortc's own sender has sent (kept for its RTCP
    sender reports; read, never reset)."""
    return (
        int(_get(sender, "_RTCRtpSender__packet_count")),
        int(_get(sender, "_RTCRtpSender__octet_count")),
    )


_REPORT_TIME = "_RTCRtpSender__ntp_timestamp"


def set_report_time(sender: RTCRtpSender, ntp: int) -> None:
    """The NTP time aiortc's next sender report gives its last packet's RTP timestamp.

    aiortc maps that timestamp to when the packet left; the gateway maps it to the moment
    the timestamp stands for on its media clock (model/clock.py). Called between frames,
    where aiortc's sending loop waits for the next one, so no report sees the send time.
    """
    _get(sender, _REPORT_TIME)  # still there
    setattr(sender, _REPORT_TIME, ntp)


# -- H.264: aiortc's packetizer, run once per stream --------------------------------------
def packetize_h264(annex_b: bytes) -> list[bytes]:
    """RTP payloads (single NAL, STAP-A, FU-A) exactly as aiortc's sender would make them."""
    split = _get(H264Encoder, "_split_bitstream")
    packetize = _get(H264Encoder, "_packetize")
    payloads: list[bytes] = packetize(split(annex_b))
    return payloads


# -- H.265: a codec aiortc lacks, registered at start-up -----------------------------------
H265_MIME = "video/H265"
#: What the registration states: Main profile, main tier, level 6, as Chrome offers it.
#: Each answer states its stream's own profile, tier and level instead (`settle_codec`).
H265_PARAMETERS = {"level-id": "180", "profile-id": "1", "tier-flag": "0", "tx-mode": "SRST"}


class H265Passthrough(Encoder):
    """aiortc's sender's encoder for H.265: packs the camera's access units (RFC 7798);
    the gateway never encodes H.265."""

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise ValueError("the gateway sends H.265 only as the camera encoded it")

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        timestamp = int(packet.pts * packet.time_base / TIME_BASE) if packet.time_base else 0
        return packetize_h265(bytes(packet)), timestamp & 0xFFFFFFFF


class H265Decoder(Decoder):
    """aiortc's receiver's decoder for H.265 (FFmpeg's, through PyAV): what a viewer of the
    gateway that takes H.265 decodes with (the tests' viewers)."""

    def __init__(self) -> None:
        self.codec = av.CodecContext.create("hevc", "r")

    def decode(self, encoded_frame: JitterFrame) -> list[Any]:
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.time_base = TIME_BASE
        return list(self.codec.decode(packet))


def _is_h265(codec: RTCRtpCodecParameters) -> bool:
    return codec.mimeType.lower() == H265_MIME.lower()


def teach_h265() -> None:
    """Register H.265 with aiortc (idempotent): a video codec to negotiate (with its RTX,
    and the feedback H.264 has: NACK, PLI), aiortc's sender packing it, and its
    receiver depacketizing and decoding it. Before any peer connection is made."""
    video: list[RTCRtpCodecParameters] = _get(aiortc.codecs, "CODECS")["video"]
    if any(_is_h265(codec) for codec in video):
        return
    get_encoder = _get(aiortc.rtcrtpsender, "get_encoder")
    get_decoder = _get(aiortc.rtcrtpreceiver, "get_decoder")
    depayload = _get(aiortc.rtcrtpreceiver, "depayload")
    payload_type = max(codec.payloadType or 0 for codec in video) + 1
    video += [
        RTCRtpCodecParameters(
            mimeType=H265_MIME,
            clockRate=CLOCK_RATE,
            payloadType=payload_type,
            rtcpFeedback=[
                RTCRtcpFeedback(type="nack"),
                RTCRtcpFeedback(type="nack", parameter="pli"),
                RTCRtcpFeedback(type="goog-remb"),
            ],
            parameters=dict(H265_PARAMETERS),
        ),
        RTCRtpCodecParameters(
            mimeType="video/rtx",
            clockRate=CLOCK_RATE,
            payloadType=payload_type + 1,
            parameters={"apt": payload_type},
        ),
    ]

    def encoder(codec: RTCRtpCodecParameters) -> Encoder:
        return H265Passthrough() if _is_h265(codec) else get_encoder(codec)

    def decoder(codec: RTCRtpCodecParameters) -> Decoder:
        return H265Decoder() if _is_h265(codec) else get_decoder(codec)

    def unpack(codec: RTCRtpCodecParameters, payload: bytes) -> bytes:
        return annexb_h265(payload) if _is_h265(codec) else depayload(codec, payload)

    aiortc.rtcrtpsender.get_encoder = encoder  # type: ignore[attr-defined]
    aiortc.rtcrtpreceiver.get_decoder = decoder  # type: ignore[attr-defined]
    aiortc.rtcrtpreceiver.depayload = unpack  # type: ignore[attr-defined]


def settle_codec(
    transceiver: RTCRtpTransceiver, payload_type: int, parameters: dict[str, str]
) -> None:
    """Narrow a transceiver whose remote offer is applied to one of the codecs it
    negotiated (and its RTX), stating `parameters` in the answer: aiortc would answer
    with its registration's `fmtp`, where the answer must state the stream's own."""
    codecs: list[RTCRtpCodecParameters] = _get(transceiver, "_codecs")
    chosen = next((c for c in codecs if c.payloadType == payload_type), None)
    if chosen is None:
        raise LookupError(f"payload type {payload_type} was not negotiated")
    chosen = copy.deepcopy(chosen)
    chosen.parameters = dict(parameters)
    rtx = [
        c
        for c in codecs
        if c.mimeType.lower() == "video/rtx" and c.parameters.get("apt") == payload_type
    ]
    transceiver._codecs = [chosen, *rtx]
