"""The fan-out engine: our own passthrough media transport beside aiortc's (Phase 3).

aiortc keeps ICE, DTLS and the RTCP it receives; once DTLS has produced a viewer's SRTP
keys, the engine takes over that viewer's video RTP and RTCP sending. Each stream's access
units are packetized once (`units`); per viewer only the header is written, protected with
the viewer's keys and sent in batches (`_fanout.c`, or `pysend` where it is not built), in
lanes of threads (`lanes`). `feed` serves one stream's viewers, `sender` plugs a viewer into
aiortc, `rtcp` answers its feedback and `engine` holds it all for the gateway.
"""
