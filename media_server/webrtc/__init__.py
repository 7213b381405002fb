"""WebRTC egress: one aiortc peer per viewer, fed from the stream's hub."""
