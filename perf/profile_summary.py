"""Read a py-spy speedscope profile: where the samples went, by thread and by function.

    python -m perf.profile_summary PROFILE.json [--top 25]

Shares are of all samples of all threads (py-spy samples idle threads too; a thread
waiting in ``epoll`` or on a lock shows up as such), so they add up across threads.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any


def summarize(document: dict[str, Any], top: int) -> str:
    frames = document["shared"]["frames"]

    def name(index: int) -> str:
        frame = frames[index]
        where = Path(frame.get("file", "?")).name
        return f"{frame['name']} ({where}:{frame.get('line', '?')})"

    threads: Counter[str] = Counter()
    inclusive: Counter[int] = Counter()
    own: Counter[int] = Counter()
    for profile in document["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            threads[profile["name"]] += weight
            for index in set(stack):
                inclusive[index] += weight
            if stack:
                own[stack[-1]] += weight
    total = sum(threads.values()) or 1
    lines = [f"{total} samples", "", "| thread | share |", "|---|---|"]
    lines += [f"| {t} | {w / total:.0%} |" for t, w in threads.most_common()]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines += ["", f"| function ({title}) | share |", "|---|---|"]
        lines += [f"| {name(i)} | {w / total:.1%} |" for i, w in counter.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarize(json.loads(args.profile.read_text()), args.top))


if __name__ == "__main__":
    main()
