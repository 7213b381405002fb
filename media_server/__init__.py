"""media_server: an RTSP to WebRTC gateway (PyAV ingest, aiortc egress, aiohttp control plane)."""

__version__ = "0.1.0"
