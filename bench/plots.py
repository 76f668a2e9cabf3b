#!/usr/bin/env python
"""PNG plots of the newest benchmark results, for docs/performance.md.

    make bench-plots
    .venv/bin/python bench/plots.py [--provider FILE] [--isolation FILE]

- docs/img/provider-throughput.png: emails/s against the provider's latency, ours and
  django-post-office, from bench/results/provider-*.json (bench/provider.py), with the ceiling
  our sends in flight allow (workers x NOTIFY_SEND_CONCURRENCY / latency).
- docs/img/isolation-latency.png: from bench/results/isolation-*.json (bench/isolation.py), the
  latency of each transactional message over the burst phase, with the bulk lane's emails/s
  beside it, and the latency distribution alone against during the burst; both with the 250 ms
  goal.

Only the figures in the results files are drawn; nothing is recomputed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
IMG = ROOT / "docs" / "img"


def newest(pattern: str) -> Path:
    found = sorted(RESULTS.glob(pattern))  # names carry a UTC timestamp: the last is the newest
    if not found:
        raise SystemExit(f"no bench/results/{pattern}: run the benchmark first")
    return found[-1]


def provider_plot(path: Path, out: Path) -> None:
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    rows = sorted(data["rows"], key=lambda r: r["latency"])
    ms = [r["latency"] * 1000 for r in rows]
    ours = [r["ours"]["rate"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=120)
    in_flight = data["workers"] * data["concurrency"]
    ax.plot(ms, ours, "o-", color="#1d4ed8", lw=2,
            label=f"ours: {data['workers']} bulk workers x {data['concurrency']} in flight")
    ax.plot(ms, [in_flight / r["latency"] for r in rows], ":", color="#1d4ed8", alpha=0.6,
            label=f"ceiling for ours: {in_flight} in flight / latency")
    for x, y in zip(ms, ours, strict=True):
        ax.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(6, 6),
                    color="#1d4ed8", fontsize=9)
    po_rows = [r for r in rows if r.get("postoffice")]
    if po_rows:
        po_ms = [r["latency"] * 1000 for r in po_rows]
        po = [r["postoffice"]["rate"] for r in po_rows]
        ax.plot(po_ms, po, "s-", color="#b45309", lw=2,
                label="django-post-office 3.12, send_queued_mail --processes 1")
        for x, y in zip(po_ms, po, strict=True):
            ax.annotate(f"{y:,.1f}", (x, y), textcoords="offset points", xytext=(6, -14),
                        color="#b45309", fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ms, [f"{m:.0f} ms" for m in ms])
    ax.minorticks_off()
    low = min([*ours, *(r["postoffice"]["rate"] for r in po_rows)])
    ax.set_ylim(bottom=low / 2)
    ticks = [t for t in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
             if low / 2 <= t <= ax.get_ylim()[1]]
    ax.set_yticks(ticks, [f"{t:,}" for t in ticks])
    ax.set_xlabel("provider latency per request (fake Postmark, Anymail's Postmark backend)")
    ax.set_ylabel("emails delivered per second (log)")
    ax.set_title(f"Throughput against provider latency ({data['messages']:,} emails per run, "
                 f"{data['cores']} cores, run {data['stamp']} UTC)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def isolation_plot(path: Path, out: Path) -> None:
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    goal = data["goals"]["tx_p99_ms"]
    burst, alone = data["burst"], data["tx_alone"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.6), dpi=120,
                                      gridspec_kw={"width_ratios": [3, 2]})

    # Left: each transactional message over the burst phase, bulk emails/s beside it.
    points = burst["tx_all"]["points"]
    start, end = burst["window"]
    left.axvspan(start, end, color="#9ca3af", alpha=0.15, label="burst (goal window)")
    left.scatter([p[0] for p in points], [p[1] for p in points], s=7, color="#1d4ed8",
                 label=f"transactional message ({data['args']['rate']:g}/s via the API)")
    left.axhline(goal, color="#dc2626", ls="--", lw=1.2, label=f"goal: p99 < {goal:.0f} ms")
    left.set_xlabel("seconds since the phase started (answer of the API)")
    left.set_ylabel("API answer -> provider receipt, ms")
    left.set_ylim(bottom=0)
    bulk_axis = left.twinx()
    per_second = burst["bulk"]["per_second"]
    bulk_axis.step([s + 0.5 for s, _ in per_second], [n for _, n in per_second], where="mid",
                   color="#059669", alpha=0.7, lw=1.2, label="bulk emails/s at the provider")
    bulk_axis.set_ylabel("bulk emails per second", color="#059669")
    bulk_axis.tick_params(axis="y", colors="#059669")
    bulk_axis.set_ylim(bottom=0)
    handles = left.get_legend_handles_labels()
    more = bulk_axis.get_legend_handles_labels()
    left.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="upper center",
                bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    left.set_title(f"Burst: {burst['bulk']['posted']:,} newsletters drained at "
                   f"{burst['bulk']['rate']:,.0f}/s (alone: "
                   f"{data.get('bulk_alone_rate', data['bulk_alone']['rate']):,.0f}/s)",
                   fontsize=10)

    # Right: the distribution, alone against during the burst.
    def cdf(values: list[float]) -> tuple[list[float], list[float]]:
        ordered = sorted(values)
        return ordered, [(i + 1) / len(ordered) * 100 for i in range(len(ordered))]

    for name, summary, color in (("alone", alone, "#6b7280"),
                                 ("during the burst", burst["tx"], "#1d4ed8")):
        values = [p[1] for p in summary["points"]]  # "tx" holds the burst window's only
        if not values:
            continue
        xs, ys = cdf(values)
        p99 = summary["p99_ms"]
        shown = "lost" if p99 is None or (isinstance(p99, float) and math.isinf(p99)) \
            else f"{p99:,.0f} ms"
        right.plot(xs, ys, color=color, lw=2,
                   label=f"{name}: p50 {summary['p50_ms']:,.0f} ms, p99 {shown}")
    right.axvline(goal, color="#dc2626", ls="--", lw=1.2, label=f"{goal:.0f} ms")
    right.axhline(99, color="#9ca3af", ls=":", lw=1)
    right.set_xscale("log")
    right.set_xlim(left=3)  # a message can reach the provider before its 202 has: <= 0 ms
    right.set_xlabel("API answer -> provider receipt, ms (log)")
    right.set_ylabel("% of transactional messages at or below")
    right.set_ylim(0, 100.5)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    right.set_title("Transactional latency: alone vs during the burst", fontsize=10)
    fig.suptitle(f"Lane isolation (bench/isolation.py, run {data['stamp']} UTC, "
                 f"{data['cores']} cores, fake Postmark at "
                 f"{data['args']['latency'] * 1000:.0f} ms)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--provider", type=Path, default=None,
                   help="a provider-*.json (default: the newest in bench/results)")
    p.add_argument("--isolation", type=Path, default=None,
                   help="an isolation-*.json (default: the newest in bench/results)")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    IMG.mkdir(parents=True, exist_ok=True)
    for name, given, pattern, draw in (
            ("provider-throughput.png", args.provider, "provider-*.json", provider_plot),
            ("isolation-latency.png", args.isolation, "isolation-*.json", isolation_plot)):
        source = given or newest(pattern)
        draw(source, IMG / name)
        shown = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
        print(f"docs/img/{name} <- {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
