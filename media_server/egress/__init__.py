"""Egresses that read a stream as fMP4: its muxer, MSE viewers and HLS (issue 19)."""
