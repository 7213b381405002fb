"""RTP as cameras send it, one layer per module: the packet (RFC 3550), a bounded reorder
window for UDP, the payload formats back to NAL units (H.264, RFC 6184; H.265, RFC 7798),
and access units assembled from them; and the other way, H.265 access units cut into
payloads for viewers (aiortc cuts H.264's). Pure protocol code: no sockets, no threads;
the RTSP client of the Phase 4 issue feeds it."""
