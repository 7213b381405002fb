"""Operator tools behind the control plane's write right: profiling the running gateway.

`POST /api/v1/admin/profile` runs py-spy against this very process for a few seconds and
answers with the profile (speedscope JSON or a flamegraph SVG). py-spy samples from the
outside without pausing the gateway (`--nonblocking`); native frames (FFmpeg, OpenSSL,
the kernel's entry points) are optional: py-spy must pause the process for each such
sample, so they are capped at 50 Hz. ``gil`` samples only
the thread that holds the GIL: where the interpreter's one lock goes when threads contend.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from media_server.api.access import require
from media_server.api.errors import ApiError
from media_server.api.schemas import parse, read_json
from media_server.auth.tokens import ADMIN

routes = web.RouteTableDef()

_running = asyncio.Lock()


class ProfileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    seconds: int = Field(10, ge=1, le=120)
    format: Literal["speedscope", "flamegraph"] = "speedscope"
    native: bool = False
    gil: bool = Field(False, description="sample only the thread holding the GIL")
    rate: int = Field(100, ge=1, le=250, description="samples per second")


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")  # installed into the same venv
    return str(beside) if beside.exists() else shutil.which("py-spy")


@routes.post("/api/v1/admin/profile")
async def profile(request: web.Request) -> web.Response:
    require(request, ADMIN)
    body = parse(ProfileRequest, await read_json(request) if request.can_read_body else {})
    tool = _py_spy()
    if tool is None:
        raise ApiError(503, "py-spy-missing", "py-spy is not installed (the test extra has it)")
    if _running.locked():
        raise ApiError(409, "profile-running", "a profile is being taken; try again after it")
    rate = min(body.rate, 50) if body.native else body.rate
    suffix = ".json" if body.format == "speedscope" else ".svg"
    async with _running:
        with tempfile.TemporaryDirectory(prefix="media-server-profile-") as scratch:
            out = Path(scratch) / f"profile{suffix}"
            args = [
                "record",
                "--pid",
                str(os.getpid()),
                "--duration",
                str(body.seconds),
                "--rate",
                str(rate),
                "--format",
                body.format,
                "--output",
                str(out),
                # Native stacks need the process paused for each sample (py-spy refuses
                # them otherwise): hence the lower rate cap above.
                *(["--native"] if body.native else ["--nonblocking"]),
                *(["--gil"] if body.gil else []),
            ]
            proc = await asyncio.create_subprocess_exec(
                tool, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            try:
                _, stderr = await asyncio.wait_for(proc.communicate(), body.seconds + 30)
            except TimeoutError:
                proc.kill()
                raise ApiError(503, "profile-failed", "py-spy did not finish in time") from None
            if proc.returncode != 0 or not out.exists():
                reason = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise ApiError(503, "profile-failed", f"py-spy failed: {reason[0][:300]}")
            data = out.read_bytes()
    return web.Response(
        body=data,
        content_type="application/json" if body.format == "speedscope" else "image/svg+xml",
        headers={"Content-Disposition": f'attachment; filename="media-server-profile{suffix}"'},
    )
