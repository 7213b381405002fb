"""MP4 as the browser's MediaSource, HLS players and recordings take it (issues 19-21)."""
