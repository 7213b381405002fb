"""The control plane: REST, health, signaling (WebSocket and WHEP) and pages."""
