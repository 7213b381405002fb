"""Prometheus metrics in one place: event counters, plus stream figures read at scrape time.

Per-stream figures are collected from the live objects when scraped, so the hot path
updates plain ints and pays nothing for Prometheus. Labels never name a viewer.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from media_server.cluster.node import ClusterNode
from media_server.egress.recorder import Recordings
from media_server.engine.engine import Engine
from media_server.engine.viewer import EngineViewer
from media_server.model.media import CLOCK_RATE, StreamState
from media_server.streams.consumer import CONSUMER_KINDS
from media_server.streams.stream import Stream

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


Egress = Callable[[set[str]], dict[tuple[str, str], tuple[int, int]]]


class _EngineCollector(Collector):
    """The fan-out engine's RTCP work and losses, summed over its viewers at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        s = self._engine.stats()
        yield GaugeMetricFamily(
            "media_server_engine_viewers", "Viewers the fan-out engine sends to", s.viewers
        )
        yield GaugeMetricFamily(
            "media_server_engine_lane_backlog",
            "Send jobs waiting in the engine's lanes",
            self._engine.lanes.backlog(),
        )
        counters = {
            "nacks": ("NACK messages received from viewers", s.nacks),
            "retransmits": ("Packets retransmitted for NACKs", s.retransmits),
            "plis": ("Picture loss indications (PLI/FIR) received", s.plis),
            "replays": ("GOP replays sent to answer a picture loss", s.replays),
            "send_dropped": ("Packets the socket refused (slow viewer)", s.dropped),
            "restarts": ("Viewers sent back to a keyframe because their lane was full", s.restarts),
        }
        for name, (text, value) in counters.items():
            yield CounterMetricFamily(f"media_server_engine_{name}", text, value)


class _RecordingCollector(Collector):
    """What recording wrote and deleted, read at scrape time."""

    def __init__(self, recordings: Recordings) -> None:
        self._recordings = recordings

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        families = {
            name: CounterMetricFamily(f"media_server_{name}", text, labels=["stream"])
            for name, text in (
                ("recording_bytes", "Bytes written to recordings"),
                ("recording_segments", "Recorded segments started"),
                ("recording_write_errors", "Recording writes that failed"),
            )
        }
        for recorder in self._recordings.all():
            label = [recorder.stream.id]
            families["recording_bytes"].add_metric(label, recorder.bytes_written)
            families["recording_segments"].add_metric(label, recorder.segments)
            families["recording_write_errors"].add_metric(label, recorder.write_errors)
        yield from families.values()
        deletions = CounterMetricFamily(
            "media_server_recording_deletions",
            "Recorded segments retention deleted, by reason (age, stream, total, disk)",
            labels=["reason"],
        )
        for reason, count in sorted(self._recordings.deleted.items()):
            deletions.add_metric([reason], count)
        yield deletions
        free = self._recordings.free_bytes
        if free is not None:
            yield GaugeMetricFamily(
                "media_server_recording_disk_free_bytes", "Free bytes on the recordings disk", free
            )


class _ClusterCollector(Collector):
    """This node's part in a cluster, read at scrape time."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        node = self._node
        yield GaugeMetricFamily(
            "media_server_cluster_redis_up",
            "Whether the last heartbeat reached Redis",
            node.redis_up,
        )
        yield GaugeMetricFamily(
            "media_server_cluster_nodes", "Nodes listed in the cluster", len(node.nodes)
        )
        yield GaugeMetricFamily(
            "media_server_cluster_ingests", "Streams this node ingests (leases held)", node.ingests
        )
        yield GaugeMetricFamily(
            "media_server_cluster_relays",
            "Links relaying a stream from this node to others",
            node.relays(),
        )
        yield CounterMetricFamily(
            "media_server_cluster_leases_lost",
            "Leases this node lost or could not renew in time (it stopped ingesting)",
            node.leases_lost,
        )


class _StreamCollector(Collector):
    def __init__(
        self,
        streams: Callable[[], list[Stream]],
        loop_lag: Callable[[], float],
        egress: Egress,
    ):
        self._streams = streams
        self._loop_lag = loop_lag
        self._egress = egress

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        streams = self._streams()
        by_state = GaugeMetricFamily(
            "media_server_streams", "Registered streams by state", labels=["state"]
        )
        for state in StreamState:
            by_state.add_metric([state.value], sum(1 for s in streams if s.state == state))
        yield by_state
        viewers = GaugeMetricFamily("media_server_viewers", "Viewers per stream", labels=["stream"])
        consumers = GaugeMetricFamily(
            "media_server_stream_consumers",
            "Consumers of each stream by kind (viewer, relay, fanout, snapshot)",
            labels=["stream", "kind"],
        )
        transitions = CounterMetricFamily(
            "media_server_stream_transitions",
            "Times a stream entered a state",
            labels=["stream", "state"],
        )
        families = {
            name: CounterMetricFamily(f"media_server_{name}", text, labels=["stream"])
            for name, text in (
                ("ingress_packets", "Encoded packets read from the source"),
                ("ingress_bytes", "Encoded bytes read from the source"),
                ("frames_decoded", "Frames decoded for transcoding"),
                ("frames_encoded", "Frames encoded once per stream (shared transcode)"),
                ("reconnects", "Source reconnect attempts"),
                ("ingest_dropped_packets", "Packets dropped because the event loop fell behind"),
                ("viewer_dropped_items", "Units or frames dropped from slow viewers' queues"),
            )
        }
        for stream in streams:
            viewers.add_metric([stream.id], stream.consumers["viewer"])
            for kind in CONSUMER_KINDS:
                consumers.add_metric([stream.id, kind], stream.consumers[kind])
            for state, count in stream.transitions.items():
                transitions.add_metric([stream.id, state.value], count)
            counters = stream.worker.counters if stream.worker else None
            if counters is not None:
                families["ingress_packets"].add_metric([stream.id], counters.packets)
                families["ingress_bytes"].add_metric([stream.id], counters.bytes)
                families["frames_decoded"].add_metric([stream.id], counters.frames_decoded)
                families["frames_encoded"].add_metric([stream.id], counters.frames_encoded)
                families["reconnects"].add_metric([stream.id], counters.reconnects)
                families["ingest_dropped_packets"].add_metric([stream.id], counters.dropped_backlog)
            families["viewer_dropped_items"].add_metric([stream.id], stream.hub.dropped)
        yield viewers
        yield consumers
        yield transitions
        yield from families.values()
        egress_packets = CounterMetricFamily(
            "media_server_egress_packets",
            "RTP packets sent to viewers",
            labels=["stream", "transport"],
        )
        egress_bytes = CounterMetricFamily(
            "media_server_egress_bytes",
            "RTP payload bytes sent to viewers",
            labels=["stream", "transport"],
        )
        for (stream_id, transport), (packets, octets) in sorted(
            self._egress({s.id for s in streams}).items()
        ):
            egress_packets.add_metric([stream_id, transport], packets)
            egress_bytes.add_metric([stream_id, transport], octets)
        yield egress_packets
        yield egress_bytes
        lag = GaugeMetricFamily(
            "media_server_event_loop_lag_seconds", "How late the event loop last woke up"
        )
        lag.add_metric([], self._loop_lag())
        yield lag


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, RSS, open fds
        self.sessions = Counter(
            "media_server_viewer_sessions",
            "Viewer sessions negotiated",
            ["via", "transport"],
            registry=self.registry,
        )
        self.signaling_seconds = Histogram(
            "media_server_signaling_seconds",
            "Time to answer an offer",
            ["via"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )

        self.first_media_seconds = Histogram(
            "media_server_time_to_first_frame_seconds",
            "From a viewer's offer to its first picture handed to its sender",
            ["transport"],
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.gc_pause = Counter(
            "media_server_gc_pause_seconds",
            "Time the interpreter stood still collecting garbage (every thread waits)",
            ["generation"],
            registry=self.registry,
        )
        self._gc_started = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pause.labels(str(info["generation"])).inc(
                time.perf_counter() - self._gc_started
            )

    def gc_pause_total(self) -> float:
        return sum(
            sample.value
            for metric in self.gc_pause.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )

    def watch_gc(self) -> None:
        """Time every collection (the Phase 2 target bounds GC pauses per second)."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def unwatch_gc(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def transports(self, chosen: dict[str, str]) -> None:
        """Label every scrape with the transports in use, so figures can be told apart."""
        info = Gauge(
            "media_server_transport_info",
            "The transports this gateway runs (value 1)",
            sorted(chosen),
            registry=self.registry,
        )
        info.labels(**chosen).set(1)

    def watch(
        self,
        streams: Callable[[], list[Stream]],
        loop_lag: Callable[[], float],
        egress: Egress,
    ) -> None:
        self.registry.register(_StreamCollector(streams, loop_lag, egress))

    def watch_recordings(self, recordings: Recordings) -> None:
        self.registry.register(_RecordingCollector(recordings))

    def watch_cluster(self, node: ClusterNode) -> None:
        self.registry.register(_ClusterCollector(node))

    def watch_engine(self, engine: Engine) -> None:
        self.registry.register(_EngineCollector(engine))
        rtt = Histogram(
            "media_server_engine_viewer_rtt_seconds",
            "Round trips from engine viewers' receiver reports (answers to our sender reports)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        loss = Histogram(
            "media_server_engine_viewer_loss_ratio",
            "Fraction of packets lost, as each receiver report of an engine viewer gives it",
            buckets=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=self.registry,
        )
        jitter = Histogram(
            "media_server_engine_viewer_jitter_seconds",
            "Interarrival jitter in engine viewers' receiver reports",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=self.registry,
        )

        def observe(viewer: EngineViewer) -> None:
            if viewer.rtt is not None:
                rtt.observe(viewer.rtt)
            loss.observe(viewer.fraction_lost / 256)
            jitter.observe(viewer.jitter / CLOCK_RATE)

        engine.on_report.append(observe)

    def render(self) -> bytes:
        return generate_latest(self.registry)
