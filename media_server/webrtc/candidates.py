"""Which of a viewer's ICE candidates the gateway will send to.

A viewer names the addresses the gateway's ICE agent then sends STUN binding requests
to: an offer's candidates and trickled ones alike go through the source guard's deny
list (cloud metadata, link-local, and nowhere: unspecified, multicast), and a session
takes at most MAX_CANDIDATES. Names other than mDNS (`*.local`, what browsers use to
hide their addresses) are refused: resolving them would make the gateway a DNS client
of the viewer's choosing.
"""

from __future__ import annotations

import ipaddress
import logging

from media_server.ingest import SourceGuard

log = logging.getLogger(__name__)

#: Candidates one viewer session may give: a browser gathers a handful per interface.
MAX_CANDIDATES = 20


def refusal(address: str, guard: SourceGuard) -> str | None:
    """Why the gateway will not send to a candidate's address, or None."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        if address.lower().endswith(".local"):
            return None
        return f"candidate address {address[:64]!r} is neither an address nor mDNS"
    reason = guard.denies(ip)
    return f"candidate address {ip} is not allowed ({reason})" if reason else None


def candidate_address(line: str) -> str | None:
    """The connection address of an `a=candidate:` line (its fifth field)."""
    fields = line.split(":", 1)[1].split() if ":" in line else []
    return fields[4] if len(fields) > 4 else None


def screen_offer(sdp: str, guard: SourceGuard) -> tuple[str, int]:
    """The offer without the candidates the gateway will not send to (or past the cap),
    and how many it keeps. Dropping them leaves the viewer its other candidates."""
    kept = 0
    lines = []
    for line in sdp.split("\n"):
        if line.startswith("a=candidate:"):
            address = candidate_address(line.rstrip("\r"))
            why = refusal(address, guard) if address is not None else "malformed candidate"
            if why is None and kept >= MAX_CANDIDATES:
                why = f"more than {MAX_CANDIDATES} candidates"
            if why is not None:
                log.info("offer candidate dropped: %s", why)
                continue
            kept += 1
        lines.append(line)
    return "\n".join(lines), kept
