"""CPU accounting from /proc for the delivery benchmark (Linux only).

A process's CPU is utime+stime; cutime+cstime adds the CPU of the children it has reaped. So the
sum of all four over the live processes of a tree is the CPU of the whole tree, including
processes that exited (and were reaped inside the tree) during the window.

PostgreSQL: the postmaster reaps every backend, so the server's total CPU is the sum over all
`postgres` processes of the four fields. The server may be shared (other databases, other
people's test runs): backends of other databases, identified by their process title
("postgres: 15/main: USER DB HOST(PORT) STATE"), are sampled during the window and subtracted,
and so is the benchmark's own polling connection.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")
# "postgres: 15/main: USER DB 127.0.0.1(5432) idle" (cluster name optional, or [local]).
_BACKEND_TITLE = re.compile(
    r"^postgres: (?:\S+: )?(\S+) (\S+) (?:\d[\d.]*\(\d+\)|\[local\]|\S+\(\d+\))"
)


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    comm: str
    own: int  # utime + stime, clock ticks
    reaped: int  # cutime + cstime: children this process has waited for


def read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    lpar, rpar = raw.index("("), raw.rindex(")")
    comm = raw[lpar + 1:rpar]
    fields = raw[rpar + 2:].split()
    # fields[0] is state (field 3 of proc(5)); utime is field 14, so fields[11].
    return ProcStat(
        pid=pid, ppid=int(fields[1]), comm=comm,
        own=int(fields[11]) + int(fields[12]), reaped=int(fields[13]) + int(fields[14]),
    )


def all_stats() -> dict[int, ProcStat]:
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = read_stat(int(name))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def tree_pids(root: int, stats: dict[int, ProcStat]) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out.append(pid)
            todo.extend(children.get(pid, ()))
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by `root` and all its descendants (live or reaped)."""
    stats = all_stats()
    return sum(stats[p].own + stats[p].reaped for p in tree_pids(root, stats)) / CLK_TCK


def process_cpu_seconds(pid: int) -> float:
    stat = read_stat(pid)
    return 0.0 if stat is None else (stat.own + stat.reaped) / CLK_TCK


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def backend_database(title: str) -> str | None:
    """The database of a backend from its process title; None for auxiliary processes."""
    match = _BACKEND_TITLE.match(title)
    return match.group(2) if match else None


@dataclass
class PgMeter:
    """CPU of the PostgreSQL server over a window, attributed to the bench database."""

    database: str
    exclude_pids: set[int] = field(default_factory=set)
    available: bool = False
    _total0: int = 0
    _total1: int = 0
    # pid -> [ticks at start (0 if born later), ticks last seen, database or None]
    _seen: dict[int, list] = field(default_factory=dict)

    def _scan(self) -> dict[int, tuple[ProcStat, str | None]]:
        out = {}
        for pid, stat in all_stats().items():
            if stat.comm == "postgres":
                out[pid] = (stat, backend_database(_cmdline(pid)))
        return out

    @staticmethod
    def _total(scan: dict[int, tuple[ProcStat, str | None]]) -> int:
        return sum(s.own + s.reaped for s, _ in scan.values())

    def start(self) -> None:
        scan = self._scan()
        self.available = bool(scan)
        self._total0 = self._total(scan)
        self._seen = {pid: [s.own, s.own, db] for pid, (s, db) in scan.items()}

    def sample(self) -> None:
        for pid, (stat, db) in self._scan().items():
            entry = self._seen.setdefault(pid, [0, 0, db])
            entry[1] = stat.own

    def stop(self) -> dict[str, float]:
        self.sample()
        self._total1 = self._total(self._scan())
        other = sum(
            last - first for pid, (first, last, db) in self._seen.items()
            if db is not None and db != self.database and pid not in self.exclude_pids
        )
        own = sum(
            last - first for pid, (first, last, _db) in self._seen.items()
            if pid in self.exclude_pids
        )
        total = self._total1 - self._total0
        return {
            "total": total / CLK_TCK,
            "other_databases": other / CLK_TCK,
            "bench_polling": own / CLK_TCK,
            "bench": max(0, total - other - own) / CLK_TCK,
        }


class MachineMeter:
    """Busy CPU of the whole machine over a window (from /proc/stat), in seconds."""

    @staticmethod
    def _ticks() -> tuple[int, int]:
        """(busy, steal) clock ticks since boot."""
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
        # user nice system idle iowait irq softirq steal (guest time is already in user). Busy is
        # only user+nice+system: interrupt time (loopback traffic's softirq) belongs to no
        # process. Steal: time the hypervisor ran something else while this VM wanted a CPU.
        return fields[0] + fields[1] + fields[2], fields[7]

    def start(self) -> None:
        self._t0, self._self0 = _now(), _self_cpu()
        self._b0, self._steal0 = self._ticks()

    def stop(self) -> dict[str, float]:
        elapsed = _now() - self._t0
        busy, steal = self._ticks()
        return {"elapsed": elapsed, "busy": (busy - self._b0) / CLK_TCK,
                "steal": (steal - self._steal0) / CLK_TCK,
                "bench_process": _self_cpu() - self._self0}


def _now() -> float:
    import time

    return time.monotonic()


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system
