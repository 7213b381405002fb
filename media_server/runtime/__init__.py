"""The interpreter's machinery chosen by configuration (`runtime.*`): the event loop, the
garbage collector's thresholds and the signaling JSON codec, each measured side by side
in PHASES.md before it became (or did not become) the default."""
