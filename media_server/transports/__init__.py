"""The swappable parts, each a small registry of named implementations chosen by
configuration (`transports.*`), so a fast path is switched on, compared side by side in
perf/ and rolled back without code changes. The media path's parts are in
`transports.transcode` (per-viewer or shared encode) and the stream's mode."""
