"""One libsrtp for aiortc and both send paths: pylibsrtp's, which aiortc already needs.

Each viewer's SRTP session is a pylibsrtp session made here. The native send path is
handed its context and the addresses of libsrtp's protect functions, read from
pylibsrtp's binding, so it needs no libsrtp of its own to build or link. pylibsrtp's
binding is private: every use of it is in this module, and `protect_functions` refuses
a binding whose functions are not the libsrtp 2 ones the native path calls (the engine
then runs its Python path). tests/unit/test_engine_units.py checks each use.
"""

from __future__ import annotations

from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi, lib

#: The C type of srtp_protect and srtp_protect_rtcp that _fanout.c calls (libsrtp 2).
PROTECT_TYPE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"
#: Packets of replay protection, as libsrtp's own default.
WINDOW = 1024


def session(profile: int, key: bytes) -> Session:
    """A viewer's outbound session. Retransmissions without RTX repeat a sequence
    number, so repeats are allowed."""
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    policy.allow_repeat_tx = True
    policy.window_size = WINDOW
    return Session(policy)


def context(srtp: Session) -> int:
    """The address of a session's libsrtp context (the session must outlive its use)."""
    return int(ffi.cast("uintptr_t", srtp._srtp[0]))


def protect_functions() -> tuple[int, int]:
    """The addresses of srtp_protect and srtp_protect_rtcp; ImportError when pylibsrtp's
    binding no longer has them with the signature the native path calls."""
    addresses = []
    for name in ("srtp_protect", "srtp_protect_rtcp"):
        try:
            function = ffi.addressof(lib, name)
        except (AttributeError, ffi.error) as exc:
            raise ImportError(f"pylibsrtp has no {name}: {exc}") from None
        found = ffi.typeof(function).cname
        if found != PROTECT_TYPE:
            raise ImportError(f"pylibsrtp's {name} is {found}, not {PROTECT_TYPE}")
        addresses.append(int(ffi.cast("uintptr_t", function)))
    return addresses[0], addresses[1]
