"""The stream hub: registered streams, their state, and fan-out to viewers."""
