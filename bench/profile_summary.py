"""Summarise a py-spy `--format raw` profile (collapsed stacks) of our qcluster.

    .venv/bin/python bench/profile_summary.py bench/results/profile-ours-<stamp>.txt [--top 25]

Only stacks inside a drain (`drain_lane`) are counted. py-spy ran with --idle, so samples where
the worker waits (socket reads from the SMTP sink or PostgreSQL) are included: the shares are of
the drain's wall time, not only its CPU time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")

# Leaf frames that mean "blocked waiting for the other side", by what the caller is talking to.
WAITS = ("recv_into", "recv", "readline", "read", "_read_status", "wait", "select", "poll",
         "_recv_bytes", "fetch", "execute")


def frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (file.py)'; keeps the function and its module."""
    frame = _LINE.sub(")", frame.strip())
    if " (" in frame:
        func, path = frame.split(" (", 1)
        path = path.rstrip(")")
        parts = path.split("/")
        if "site-packages" in parts:
            path = "/".join(parts[parts.index("site-packages") + 1:])
        elif "lib" in parts and "python3" in "".join(parts):
            path = "stdlib/" + parts[-1]
        else:
            path = "/".join(parts[-2:])
        return f"{func} ({path})"
    return frame


def summarise(path: Path, top: int) -> str:
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    category: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "drain_lane" not in stack:
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += n
        self_counts[frames[-1]] += n
        for name in set(frames):
            incl_counts[name] += n
        category[_category(frames)] += n
    if not total:
        return f"{path}: no drain_lane samples"
    out = [f"{total:,} samples inside drain_lane ({path.name})", "",
           "where the drain's wall time goes:"]
    for name, n in category.most_common():
        out.append(f"  {n / total:6.1%}  {name}")
    out += ["", f"top {top} inclusive (function and everything it calls):"]
    for name, n in incl_counts.most_common(top):
        out.append(f"  {n / total:6.1%}  {name}")
    out += ["", f"top {top} self (the leaf frame: where the sample was taken):"]
    for name, n in self_counts.most_common(top):
        out.append(f"  {n / total:6.1%}  {name}")
    return "\n".join(out)


def _category(frames: list[str]) -> str:
    joined = ";".join(frames)
    if "claim_batch" in joined:
        part = "claim_batch (SELECT ... FOR UPDATE SKIP LOCKED + UPDATE)"
    elif "record_outcomes" in joined:
        part = "record_outcomes (UPDATE sent + bulk_create DeliveryAttempt)"
    elif "build_email" in joined:
        part = "build_email (EmailMultiAlternatives)"
    elif "_send_one" in joined or "send_messages" in joined or "send_each" in joined:
        leaf = frames[-1].split(" ", 1)[0]
        waiting = leaf in WAITS or "socket" in frames[-1]
        part = "send: waiting for the sink" if waiting else "send: CPU (MIME, smtplib)"
    elif "wake_lane" in joined or "wake_taken" in joined:
        part = "wake_lane / wake_taken"
    elif "_next_due" in joined or "_linger" in joined:
        part = "idle: _next_due / _linger"
    else:
        part = "other (drain loop, Django, release)"
    return part


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
