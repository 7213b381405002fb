"""The command line both harness probes share: BASE_URL STREAM --warmup W --window T.

Each probe prints its result as one JSON line, which the harness collects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

Probe = Callable[[str, str, float, float], Coroutine[Any, Any, dict[str, Any]]]


def probe_main(run: Probe, doc: str | None) -> None:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("base_url")
    parser.add_argument("stream")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.base_url, args.stream, args.warmup, args.window))
    print(json.dumps(result), flush=True)
