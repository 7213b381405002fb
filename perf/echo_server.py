"""A WebSocket that answers pings and does nothing else: the harness's control for the
signaling round trip.

The ping probe's round trip to the gateway is read against its round trip, in the same
window and under the same load, to this: the same aiohttp stack with no media, no viewers
and no threads. What the control shows is the floor the host sets (the probe's own
scheduling, the kernel); what the gateway shows above it is the gateway's.

    python -m perf.echo_server PORT
"""

from __future__ import annotations

import json
import sys

from aiohttp import WSMsgType, web


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type != WSMsgType.TEXT:
            continue
        data = json.loads(message.data)
        if isinstance(data, dict) and data.get("type") == "ping":
            await ws.send_str(json.dumps({"type": "pong", "id": data.get("id")}))
    return ws


def main() -> None:
    app = web.Application()
    app.router.add_get("/ws/{stream}", websocket)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
