"""Ingest: reader threads that pull a source (RTSP camera or the demo) and hand media to the hub."""
