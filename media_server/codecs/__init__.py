"""Bitstream helpers: what the gateway must know about a codec without decoding it."""
