"""Sources and their reader threads. What the stream package uses of ingest is this
interface, re-exported here; the rest of the package is how it is done.
"""

from media_server.ingest.demo import registration as demo_registration
from media_server.ingest.guard import SourceDenied, SourceGuard
from media_server.ingest.reactor import Reactor
from media_server.ingest.rtp_transport import PortPairs
from media_server.ingest.sources import SourceContext, SourceFactory, source_for
from media_server.ingest.worker import IngestCounters, IngestSink, IngestWorker

__all__ = [
    "IngestCounters",
    "IngestSink",
    "IngestWorker",
    "PortPairs",
    "Reactor",
    "SourceContext",
    "SourceDenied",
    "SourceFactory",
    "SourceGuard",
    "demo_registration",
    "source_for",
]
