"""The persistent stream registry: what was registered survives restarts and crashes."""
