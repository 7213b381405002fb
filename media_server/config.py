"""Settings: CLI > MEDIA_SERVER_* environment > config file (YAML) > defaults.

One pydantic-settings model is the single source of truth; `load_settings` layers the
sources and turns a validation failure into a message that names the bad setting.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from media_server.model.registration import (
    IngestClient,
    ReconnectPolicy,
    Registration,
    RtspTransport,
)

#: Who sends a passed-through viewer's video: aiortc's own RTP sender, or our fan-out engine.
MediaPath = Literal["aiortc", "engine"]
#: Where a transcoded stream is encoded: once for all its viewers, or by aiortc per viewer.
TranscodeEncode = Literal["shared", "per_viewer"]
#: The fan-out engine's send path.
SendPathName = Literal["native", "python"]
#: How an RTSP read that stalls is noticed (see IngestSettings.stall_check).
StallCheck = Literal["interpreter", "socket"]
NativeReader = Literal["loop", "threads"]
EventLoop = Literal["asyncio", "uvloop"]
GcPolicy = Literal["standard", "relaxed"]
JsonCodecName = Literal["stdlib", "orjson"]
MEDIA_PATHS: tuple[MediaPath, ...] = get_args(MediaPath)
TRANSCODE_ENCODES: tuple[TranscodeEncode, ...] = get_args(TranscodeEncode)


def is_loopback_host(host: str) -> bool:
    """Whether a host (a name or an address, brackets allowed) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestSettings(_Section):
    """How cameras are read."""

    transport: RtspTransport = "tcp"
    client: IngestClient = Field(
        "auto",  # measured side by side in PHASES.md: a frame sooner, x0.79 CPU at 100
        description="who reads RTSP cameras: pyav (FFmpeg's client, behind the gate), "
        "native (the gateway's own: a unit leaves on its marker bit, a frame sooner), or "
        "auto (native where it takes the camera, pyav for the rest); a registration's "
        "`client` overrides it",
    )
    native_reader: NativeReader = Field(
        "loop",  # measured side by side in PHASES.md: x0.26 CPU at 100 cameras
        description="how the native client's sessions are read: loop (one thread waits "
        "on all of them) or threads (a thread blocked on each)",
    )
    stall_check: StallCheck = Field(
        "socket",  # measured side by side in PHASES.md: x0.73 CPU at 50 streams
        description="interpreter: PyAV checks the read timeout under the GIL each time "
        "FFmpeg polls; socket: FFmpeg's own socket timeout, reads never take the GIL",
    )
    udp_ports: str = Field(
        "30000-31999",
        pattern=r"^\d{1,5}-\d{1,5}$",
        description="UDP ports the native client takes RTP on (ingest.transport udp): a "
        "pair per track, RTP on an even port and RTCP on the next",
    )
    open_timeout: float = Field(5.0, gt=0, le=60, description="seconds to open an RTSP session")
    read_timeout: float = Field(5.0, gt=0, le=60, description="seconds without data = stall")
    thread_nice: int = Field(
        10,  # measured side by side in PHASES.md: latency P99 x0.56 at 100 streams
        ge=0,
        le=19,
        description="scheduling niceness of ingest threads, above the event loop's",
    )
    reconnect: ReconnectPolicy = Field(default_factory=lambda: ReconnectPolicy())
    on_demand_linger: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="seconds an on-demand stream stays open after its last viewer",
    )

    @field_validator("udp_ports")
    @classmethod
    def _udp_ports(cls, value: str) -> str:
        first, last = (int(port) for port in value.split("-"))
        if not 1024 <= first < last <= 65535:
            raise ValueError("udp_ports must be first-last, 1024 <= first < last <= 65535")
        return value

    @property
    def udp_port_range(self) -> tuple[int, int]:
        first, last = (int(port) for port in self.udp_ports.split("-"))
        return first, last


class HubSettings(_Section):
    """Fan-out bounds: every queue and cache has a size."""

    viewer_queue: int = Field(128, ge=8, le=4096, description="access units queued per viewer")
    viewer_frames: int = Field(
        4, ge=1, le=64, description="decoded frames queued per viewer (transcode)"
    )
    gop_cache_units: int = Field(128, ge=1, le=4096, description="most units kept for a GOP")
    gop_cache_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024, description="most bytes per GOP")
    ingest_backlog: int = Field(256, ge=8, le=8192, description="units in flight thread->loop")


class IceServer(_Section):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class WebRTCSettings(_Section):
    """Peer settings. No ICE server by default: the gateway never contacts the internet."""

    ice_servers: list[IceServer] = Field(default_factory=list)
    media_path: MediaPath = Field(
        "engine",  # measured side by side in PHASES.md: x0.24-0.40 CPU per packet
        description="who sends a passed-through viewer's video: aiortc (its sender "
        "packetizes, protects and sends for every viewer) or engine (our fan-out engine "
        "packetizes once per stream and sends in batches)",
    )
    connect_timeout: float = Field(30.0, gt=0, le=600, description="seconds for ICE+DTLS")


class LimitsSettings(_Section):
    """Admission control: past a limit a request is refused (503) and nobody else notices."""

    streams: int = Field(200, ge=1, le=100_000, description="registered streams per node")
    viewers: int = Field(500, ge=1, le=100_000, description="viewer sessions per node")
    viewers_per_stream: int = Field(200, ge=1, le=100_000, description="viewers of one stream")
    websockets: int = Field(1000, ge=1, le=100_000, description="open signaling sockets per node")
    # Per client: sized so that a room of viewers behind one address (an office's NAT, a
    # proxy without http.trusted_proxies) can all join at once.
    websockets_per_client: int = Field(
        150, ge=1, le=100_000, description="open signaling sockets one client holds"
    )
    sessions_per_client: int = Field(
        150, ge=1, le=100_000, description="viewer sessions one client (address or token) holds"
    )
    registrations_per_minute: float = Field(60, gt=0, description="stream registrations, client")
    registrations_burst: int = Field(20, ge=1)
    offers_per_minute: float = Field(600, gt=0, description="viewer offers (WS, WHEP), client")
    offers_burst: int = Field(150, ge=1, description="offers one client may make at once")
    connections_per_client: int = Field(
        300,
        ge=1,
        le=100_000,
        description="open connections from one address (not counted behind trusted proxies)",
    )
    event_streams: int = Field(
        100, ge=1, le=100_000, description="open live event streams (consoles) per node"
    )
    ws_messages_per_second: float = Field(20, gt=0, description="messages on one socket")
    ws_messages_burst: int = Field(60, ge=1)


class HealthSettings(_Section):
    ready_max_lag: float = Field(1.0, gt=0, le=60, description="loop lag that fails readiness")
    block_threshold: float = Field(
        2.0, gt=0, le=600, description="a loop stuck this long is logged and fails liveness"
    )
    window: float = Field(30.0, gt=0, le=3600, description="how long a block fails liveness")


#: Link-local (cloud metadata lives there), the AWS IPv6 and Alibaba metadata addresses,
#: "this host" addresses, and the metadata names clouds answer to.
DEFAULT_DENY = [
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
    "0.0.0.0/8",
    "::/128",
    "metadata.google.internal",
    "metadata",
]


class SourcesSettings(_Section):
    """Which hosts camera URLs may point at (see ingest/guard.py)."""

    allow: list[str] = Field(
        default_factory=list, description="if set, only these hosts, networks or *.names"
    )
    deny: list[str] = Field(default_factory=lambda: list(DEFAULT_DENY))
    allow_loopback: bool | None = Field(
        None,
        description="cameras on this gateway's own host (loopback, localhost, its own "
        "addresses); unset: allowed only while the gateway listens on loopback alone, "
        "since its callers are then local anyway",
    )


class TranscodeSettings(_Section):
    """How a stream that browsers cannot take as it is gets to them."""

    encode: TranscodeEncode = Field(
        "shared",  # measured side by side in PHASES.md: x0.12 CPU, x0.2 RSS at 20 viewers
        description="shared: the stream encodes H.264 once and all its viewers share it; "
        "per_viewer: aiortc encodes for every viewer (the Phase 1 baseline)",
    )
    bitrate: int = Field(
        1_500_000, ge=100_000, le=20_000_000, description="bits/s of the shared encode"
    )


class MseSettings(_Section):
    """MSE viewers: the stream's fMP4 over their signaling WebSocket."""

    viewer_bytes: int = Field(
        4 * 1024 * 1024,
        ge=256 * 1024,
        le=256 * 1024 * 1024,
        description="bytes queued per viewer; one further behind starts again at a keyframe",
    )


class HlsSettings(_Section):
    """LL-HLS (RFC 8216bis) from the stream's fMP4, served from memory."""

    part_duration: float = Field(
        0.2, ge=0.05, le=2.0, description="seconds of a partial segment (PART-TARGET)"
    )
    segment_duration: float = Field(
        1.0, ge=0.2, le=30.0, description="least seconds of a segment; each starts at a keyframe"
    )
    segments: int = Field(
        7, ge=3, le=60, description="whole segments a media playlist lists and memory keeps"
    )
    max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        le=4 * 1024 * 1024 * 1024,
        description="bytes of segments kept per stream: older ones go first",
    )
    idle: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="seconds a player counts (and the stream stays muxed) after its last request",
    )


class RecordSettings(_Section):
    """Streams kept on disk: fMP4 segments of the stream as it is, one folder per stream."""

    default: bool = Field(
        False, description="record the streams whose registration leaves `record` null"
    )
    directory: Path = Field(
        default_factory=lambda: default_registry_path().with_name("recordings"),
        description="where each stream's folder of segments goes",
    )
    segment_duration: float = Field(
        60.0, ge=1.0, le=3600.0, description="least seconds of a segment; each starts at a keyframe"
    )
    gap: float = Field(
        2.0,
        gt=0,
        le=60,
        description="seconds without a picture that end a segment: the outage shows as a gap",
    )
    pending_bytes: int = Field(
        8 * 1024 * 1024,
        ge=256 * 1024,
        le=1024 * 1024 * 1024,
        description="bytes per stream waiting for the disk; past it, what comes is dropped up "
        "to the next keyframe (a gap), and live viewing goes on",
    )
    max_age: float = Field(7 * 86_400, ge=0, description="seconds a segment is kept (0: no limit)")
    max_stream_bytes: int = Field(
        0, ge=0, description="bytes of segments kept per stream, oldest go first (0: no limit)"
    )
    max_bytes: int = Field(
        0, ge=0, description="bytes of segments kept in all, oldest go first (0: no limit)"
    )
    min_free_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=0,
        description="free space the disk keeps: under it the oldest segments go first",
    )
    sweep_interval: float = Field(
        10.0, gt=0, le=3600, description="seconds between looks at what to delete"
    )

    @field_validator("directory")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()


class EngineSettings(_Section):
    """The fan-out engine (webrtc.media_path: engine)."""

    send_path: SendPathName = Field(
        "native",
        description="native (C, sendmmsg, lanes of threads) or pure Python; native falls "
        "back to Python when it was not built",
    )
    lanes: int = Field(0, ge=0, le=64, description="sending threads, 0: one per core")
    gso: bool = Field(
        True,
        description="native send path: runs of equal-sized packets to a viewer go out as one "
        "UDP GSO send where the kernel and route allow it (else one datagram each)",
    )
    lane_depth: int = Field(1024, ge=8, le=65_536, description="jobs queued per lane")
    lane_max_lag: float = Field(
        0.25,
        gt=0,
        le=5,
        description="seconds a send may wait in its lane; later ones are skipped and their "
        "viewers restart at the next keyframe (a late frame only adds delay)",
    )
    history: int = Field(
        4096, ge=256, le=65_536, description="packets per stream kept to answer NACKs"
    )
    start: Literal["random", "near-wrap"] = Field(
        "random",
        description="each viewer's first RTP sequence number and timestamp: random "
        "(RFC 3550), or near-wrap: both wrap within seconds (tests of long runs)",
    )


class CanarySettings(_Section):
    """A share of new viewers gets another choice, to compare it live and roll it back."""

    choice: MediaPath | TranscodeEncode | None = Field(
        None,
        description="a media path (aiortc, engine) for passed-through streams, or a "
        "transcode encode (shared, per_viewer) for transcoded ones",
    )
    percent: float = Field(0, ge=0, le=100, description="that share, in per cent")

    def gives(self, choice: str) -> bool:
        return self.choice == choice and self.percent > 0


class RuntimeSettings(_Section):
    """The interpreter's machinery, chosen by measurement (PHASES.md)."""

    loop: EventLoop = Field("asyncio", description="the event loop")
    gc: GcPolicy = Field(
        "standard", description="garbage collector thresholds: the interpreter's, or relaxed"
    )
    json_codec: JsonCodecName = Field("stdlib", description="signaling JSON")


#: The settings once called transports.*, and what they are called now. The old names
#: work for one release, with a warning at start-up.
RENAMED = {
    "transcode": "transcode.encode",
    "shared_bitrate": "transcode.bitrate",
    "passthrough": "webrtc.media_path",
    "engine": "engine.send_path",
    "engine_lanes": "engine.lanes",
    "engine_gso": "engine.gso",
    "engine_lane_depth": "engine.lane_depth",
    "engine_lane_max_lag": "engine.lane_max_lag",
    "engine_history": "engine.history",
    "engine_start": "engine.start",
    "canary": "canary.choice",
    "canary_percent": "canary.percent",
    "read_timeout": "ingest.stall_check",
    "loop": "runtime.loop",
    "gc": "runtime.gc",
    "json_codec": "runtime.json_codec",
}


def _rename(data: Any, notes: list[str]) -> Any:
    """Move `transports.*` values to their new names (a new name given as well wins)."""
    if not isinstance(data, dict) or "transports" not in data:
        return data
    old = data.pop("transports")
    if old is None:
        return data
    if not isinstance(old, dict):
        raise ValueError("transports: the section is renamed (see RENAMED in config.py)")
    data = dict(data)
    for key, value in old.items():
        if key not in RENAMED:
            raise ValueError(f"transports.{key}: unknown setting")
        section, name = RENAMED[key].split(".")
        current = data.get(section)
        if current is None:
            current = {}
        elif not isinstance(current, dict):
            continue  # a section given whole (an object already): it wins
        data[section] = {name: value, **current}
        notes.append(f"setting transports.{key} is now {RENAMED[key]}; the old name goes")
    return data


class HttpSettings(_Section):
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed cross-origin (WHEP players); '*' any"
    )
    allow_plain: bool = Field(
        False,
        description="serve plain HTTP on a non-loopback address (behind a proxy that "
        "terminates TLS); without it such an address needs tls",
    )
    request_timeout: float = Field(
        10.0,
        gt=0,
        le=600,
        description="seconds a request's head and body may take to arrive, from its first "
        "byte; a slower one's connection is closed",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks of proxies in front of the gateway: from them, "
        "the client is the last address in X-Forwarded-For that is not one of them (per-"
        "client limits count by it)",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is no address or network") from None
        return value


class TlsSettings(_Section):
    """HTTPS for the control plane, pages, WebSocket and WHEP; the files are read again
    on SIGHUP, so a renewed certificate needs no restart."""

    cert_file: Path | None = Field(None, description="PEM certificate chain")
    key_file: Path | None = Field(None, description="PEM private key")

    @model_validator(mode="after")
    def _both(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls needs both cert_file and key_file")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class AuthSettings(_Section):
    """Control-plane and viewer authentication; with none configured the gateway stays on
    loopback (protected mode) unless `insecure` is set."""

    tokens: list[str] = Field(default_factory=list, description="static control-plane tokens")
    jwt_secret: str | None = Field(None, min_length=16, description="HS256 key for JWTs")
    jwks_file: Path | None = Field(None, description="JWKS file of RS256/ES256 public keys")
    jwt_audience: str | None = Field(None, description="required 'aud' of control-plane JWTs")
    jwt_issuer: str | None = Field(None, description="required 'iss' of control-plane JWTs")
    viewer_tokens: bool | None = Field(
        None,
        description="viewing (the player, WebSocket, WHEP, snapshots) needs a viewer token "
        "or a control-plane token that may read; unset: whenever control-plane auth is "
        "configured. false makes viewing open (start-up warns beyond loopback)",
    )
    viewer_secret: str | None = Field(
        None, min_length=16, description="HS256 key for viewer tokens (random per process)"
    )
    viewer_token_ttl: float = Field(3600, gt=0, le=7 * 86_400, description="longest lifetime")
    insecure: bool = Field(False, description="allow a non-loopback host without auth")

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: list[str]) -> list[str]:
        if any(len(token) < 8 for token in value):
            raise ValueError("each token needs at least 8 characters")
        return value


def default_registry_path() -> Path:
    """$XDG_STATE_HOME/media_server/registry.sqlite3 (~/.local/state when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "media_server" / "registry.sqlite3"


class RegistrySettings(_Section):
    backend: Literal["sqlite", "redis"] = Field(
        "sqlite",
        description="sqlite: a file on this node (one gateway); redis: shared by a cluster "
        "of gateways (see the cluster settings)",
    )
    path: Path = Field(
        default_factory=default_registry_path,
        description="SQLite file of the stream registry (':memory:' keeps nothing)",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="the Redis server of the redis backend"
    )
    redis_prefix: str = Field(
        "media_server:",
        pattern=r"^[A-Za-z0-9_:.-]{1,64}$",
        description="key prefix, so clusters can share one Redis",
    )

    @field_validator("path")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()


class ClusterSettings(_Section):
    """A node of a cluster of gateways; applies when the registry backend is redis."""

    node_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="this node's name in the cluster (default: host name and port)",
    )
    advertise_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="how other nodes reach this one, e.g. http://10.0.0.5:8080 "
        "(default: http://<host>:<port>)",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="where viewers are redirected to reach this node (default: advertise_url)",
    )
    secret: str | None = Field(
        None, min_length=16, description="shared by the nodes; authenticates the internal link"
    )
    edge: Literal["relay", "redirect"] = Field(
        "relay",
        description="a viewer of a stream another node ingests: relay (this node pulls it "
        "from that node and fans it out) or redirect (WHEP and pages answer 307 to it)",
    )
    heartbeat: float = Field(1.0, ge=0.1, le=60, description="seconds between renewals")
    node_ttl: float = Field(
        5.0, ge=0.5, le=600, description="seconds a node stays listed after its last heartbeat"
    )
    lease_ttl: float = Field(
        5.0,
        ge=0.5,
        le=600,
        description="seconds an ingest lease lasts unrenewed: another node takes a dead "
        "node's cameras within about lease_ttl + heartbeat + the camera's open time",
    )

    @model_validator(mode="after")
    def _timing(self) -> ClusterSettings:
        if self.lease_ttl < 3 * self.heartbeat or self.node_ttl < 3 * self.heartbeat:
            raise ValueError("lease_ttl and node_ttl must be at least 3 heartbeats")
        return self


class DemoSettings(_Section):
    width: int = Field(640, ge=16, le=1920, multiple_of=2)
    height: int = Field(480, ge=16, le=1080, multiple_of=2)
    fps: int = Field(30, ge=1, le=60)
    bitrate: int = Field(1_000_000, ge=50_000, le=20_000_000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MEDIA_SERVER_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    demo: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="text lines, or one JSON object per line for log pipelines"
    )
    drain_timeout: float = Field(
        5.0, ge=0, le=3600, description="seconds viewers may run on after SIGTERM"
    )
    shutdown_timeout: float = Field(
        4.0, gt=0, le=60, description="seconds to close peers and ingest after the drain"
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)

    ingest: IngestSettings = Field(default_factory=lambda: IngestSettings())
    hub: HubSettings = Field(default_factory=lambda: HubSettings())
    webrtc: WebRTCSettings = Field(default_factory=lambda: WebRTCSettings())
    mse: MseSettings = Field(default_factory=lambda: MseSettings())
    hls: HlsSettings = Field(default_factory=lambda: HlsSettings())
    record: RecordSettings = Field(default_factory=lambda: RecordSettings())
    limits: LimitsSettings = Field(default_factory=lambda: LimitsSettings())
    health: HealthSettings = Field(default_factory=lambda: HealthSettings())
    sources: SourcesSettings = Field(default_factory=lambda: SourcesSettings())
    http: HttpSettings = Field(default_factory=lambda: HttpSettings())
    tls: TlsSettings = Field(default_factory=lambda: TlsSettings())
    transcode: TranscodeSettings = Field(default_factory=lambda: TranscodeSettings())
    engine: EngineSettings = Field(default_factory=lambda: EngineSettings())
    canary: CanarySettings = Field(default_factory=lambda: CanarySettings())
    runtime: RuntimeSettings = Field(default_factory=lambda: RuntimeSettings())
    #: The old names of transcode, webrtc.media_path, engine, canary, runtime and
    #: ingest.stall_check (see RENAMED); read for one release, never written.
    transports: dict[str, Any] | None = Field(None, exclude=True)
    auth: AuthSettings = Field(default_factory=lambda: AuthSettings())
    registry: RegistrySettings = Field(default_factory=lambda: RegistrySettings())
    cluster: ClusterSettings = Field(default_factory=lambda: ClusterSettings())
    demo_source: DemoSettings = Field(default_factory=lambda: DemoSettings())
    streams: list[Registration] = Field(
        default_factory=list, description="cameras declared here (see Registration)"
    )
    watch_config: bool = Field(
        False, description="reload the config file when it changes (SIGHUP always does)"
    )

    @field_validator("streams")
    @classmethod
    def _unique_streams(cls, value: list[Registration]) -> list[Registration]:
        seen: set[str] = set()
        for stream in value:
            if stream.id in seen:
                raise ValueError(f"stream id '{stream.id}' is declared twice")
            seen.add(stream.id)
        return value

    _renamed: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _old_names(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        notes: list[str] = []
        settings = handler(_rename(data, notes))
        settings._renamed = notes
        return settings

    @property
    def loopback_only(self) -> bool:
        """Whether the gateway listens on loopback alone (its callers are local)."""
        return is_loopback_host(self.host)

    @property
    def renamed(self) -> list[str]:
        """What was set under an old name (to be said once at start-up)."""
        return list(self._renamed)

    @model_validator(mode="after")
    def _cluster(self) -> Settings:
        if self.registry.backend == "redis" and not self.cluster.secret:
            raise ValueError(
                "cluster.secret is needed with registry.backend redis: it authenticates "
                "the link between nodes"
            )
        return self


class ConfigError(Exception):
    """A setting is invalid; the message names it."""


class _FileSource(PydanticBaseSettingsSource):
    """Values already read from the YAML config file."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    expanded: dict[str, Any] = _expand_env(loaded, path, ())
    return expanded


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, path: Path, where: tuple[str, ...]) -> Any:
    """Replace ${NAME} in string values with the environment's NAME, so secrets (camera
    passwords, tokens) need not be written into the file."""
    if isinstance(value, dict):
        return {k: _expand_env(v, path, (*where, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, path, (*where, str(i))) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            setting = ".".join(where) or "(top level)"
            raise ConfigError(f"config file {path}: '{setting}' uses ${{{name}}}, which is not set")
        return os.environ[name]

    return _ENV_REF.sub(lookup, value)


def validation_problems(exc: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, message) for each problem, worded for people rather than for pydantic."""
    problems = []
    for err in exc.errors():
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append((tuple(err["loc"]), message))
    return problems


def _describe(exc: ValidationError) -> str:
    lines = []
    for loc, message in validation_problems(exc):
        name = ".".join(str(part) for part in loc) or "(settings)"
        env = "MEDIA_SERVER_" + "__".join(str(part).upper() for part in loc)
        lines.append(f"invalid setting '{name}' ({env}): {message}")
    return "\n".join(lines)


def load_settings(config_file: Path | None = None, **cli: Any) -> Settings:
    """Layer the sources; `cli` holds only the options given on the command line."""
    file_values = read_config_file(config_file) if config_file else {}

    class _Layered(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, _FileSource(settings_cls, file_values)

    try:
        return _Layered(**cli)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except SettingsError as exc:  # a value the environment source could not even parse
        raise ConfigError(f"invalid setting: {exc} (complex values are JSON)") from None
