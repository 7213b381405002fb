"""Who may do what: control-plane tokens (static or JWT) and per-stream viewer tokens."""
