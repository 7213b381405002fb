LIBSRTP_VERSION: int

class Viewer:
    closed: bool
    gso: bool
    syscalls: int
    def __init__(
        self,
        *,
        fd: int,
        host: str,
        port: int,
        profile: int,
        key: bytes,
        ssrc: int,
        payload_type: int,
        seq: int,
        ts_offset: int,
        mid_id: int,
        mid: bytes,
        abs_send_time_id: int,
        rtx_ssrc: int,
        rtx_payload_type: int,
        rtx_seq: int,
        gso: bool = True,
    ) -> None: ...
    def retransmit(self, seq: int, payload: bytes, timestamp: int, marker: bool, /) -> bool: ...
    def send_rtcp(self, data: bytes, /) -> bool: ...
    def lookup(self, seq: int, /) -> tuple[int, int] | None: ...
    def sender_info(self) -> tuple[int, int, int, int, int, int, int, int]: ...
    def retarget(self, fd: int, host: str, port: int, /) -> None: ...
    def close(self) -> None: ...

def send_unit(
    viewers: tuple[Viewer, ...], payloads: tuple[bytes, ...], timestamp: int, first_index: int, /
) -> int: ...
