"""load.py's figures: what a run collected (Stats, Measured) and the tables it prints."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from dataclasses import dataclass, field

from _harness import pct
from _server import Sampler


@dataclass
class Stats:
    create_ms: list[float] = field(default_factory=list)
    warm_first_ms: list[float] = field(default_factory=list)  # --warm: each session's first turn
    first_ms: list[float] = field(default_factory=list)
    # (seconds since the first message was sent, its first event in ms): the timeline
    first_at: list[tuple[float, float]] = field(default_factory=list)
    # first event of each session's first message, and of its later ones (cold runs)
    opening_ms: list[float] = field(default_factory=list)
    later_ms: list[float] = field(default_factory=list)
    done_ms: list[float] = field(default_factory=list)
    # from the message's start to its request's first byte out: the client's own wait,
    # part of every latency above (the load client's share of the CPU shows here)
    client_wait_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: dict[str, list[str]] = field(default_factory=dict)  # acknowledged, by session
    lost: int = 0
    turns: int = 0

    @property
    def acked(self) -> int:
        return sum(len(s) for s in self.sent.values())


@dataclass
class Measured:
    stats: Stats
    wall: float
    sampler: Sampler
    end: tuple[float, float]  # memory at the end, RSS / PSS (MB)
    nprocs: int


def _pair(mb: tuple[float, float]) -> str:
    return f"{mb[0]:>6.0f} / {mb[1]:>5.0f}"


TIMELINE_ROLES = ("ingress", "registry", "session", "start", "ray")


def _timeline(stats: Stats, sampler: Sampler, window_s: float = 5.0) -> list[str]:
    """First event by when the message was sent, beside the CPUs each role of the server
    used in that window: where in the run the slow ones were, and what was busy then."""
    if not stats.first_at:
        return []
    start = min(t for t, _ in stats.first_at)
    buckets: dict[int, list[float]] = {}
    for t, ms in stats.first_at:
        buckets.setdefault(int((t - start) // window_s), []).append(ms)
    cpus: dict[int, Counter[str]] = {}
    for t, used in sampler.seconds:
        if t >= start:
            cpus.setdefault(int((t - start) // window_s), Counter()).update(used)
    roles = " | ".join(TIMELINE_ROLES)
    lines = ["", f"| sent at (s) | messages | first event p50 | p95 | max | CPUs: {roles} |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(TIMELINE_ROLES)]
    for k in sorted(buckets):
        ms, used = buckets[k], cpus.get(k, Counter())
        load = " | ".join(f"{used[r] / window_s:.2f}" for r in TIMELINE_ROLES)
        lines.append(f"| {k * window_s:.0f}-{(k + 1) * window_s:.0f} | {len(ms)} | "
                     f"{pct(ms, 50):.0f} | {pct(ms, 95):.0f} | {max(ms):.0f} | {load} |")
    return lines


def table(args: argparse.Namespace, stats: Stats, wall_s: float, sampler: Sampler,
          mem_end: tuple[float, float], nprocs: int, direct: dict,
          load: tuple[float, float]) -> str:
    turns = max(stats.turns, 1)
    cpu_s = sampler.cpu_used()
    direct_ms = direct["cpu_s"] / max(len(direct["done"]), 1) * 1000
    # --warm: the server's idle rate (measured before) times the measured wall.
    busy_ms = (cpu_s - sampler.idle_cpus * wall_s) / turns * 1000
    client_ms = sampler.client_s / turns * 1000
    lines = [
        f"load: {args.sessions} sessions x {args.messages} messages at concurrency "
        f"{args.concurrency}{' (warm: measured after one turn each)' if args.warm else ''}, "
        f"store {'postgres' if args.database_url else 'sqlite'}, fake model, loopback; "
        f"measured wall {wall_s:.1f}s, {stats.turns / wall_s:.1f} turns/s; "
        f"{os.cpu_count()} CPUs, load average before {load[0]:.2f} after {load[1]:.2f}; "
        f"{args.client}",
        "",
        f"| {'measurement':<40} |     n |     p50 |     p95 |     p99 |     max |",
        f"|{'-' * 42}|------:|--------:|--------:|--------:|--------:|",
    ]
    rows = [("create session (ms)", stats.create_ms)]
    if args.warm:
        rows.append(("warm-up turn: first event (ms)", stats.warm_first_ms))
    rows += [
        ("message: first event (ms)", stats.first_ms),
        *([("  a session's 1st message (ms)", stats.opening_ms),
           ("  its later messages (ms)", stats.later_ms)] if not args.warm else []),
        ("message: done (ms)", stats.done_ms),
        ("  of it, waiting in the load client (ms)", stats.client_wait_ms),
        ("floor: SDK straight to model, first (ms)", direct["first"]),
        ("floor: SDK straight to model, done (ms)", direct["done"]),
    ]
    for name, values in rows:
        cells = " | ".join(f"{pct(values, q):>7.1f}" for q in (50, 95, 99, 100))
        lines.append(f"| {name:<40} | {len(values):>5} | {cells} |")
    lines += [
        "",
        "| figure                                     |        value |",
        "|--------------------------------------------|-------------:|",
        f"| errors                                     | {len(stats.errors):>12} |",
        f"| acknowledged messages                      | {stats.acked:>12} |",
        f"| lost messages                              | {stats.lost:>12} |",
        f"| turns measured                             | {stats.turns:>12} |",
        f"| server CPU ms per turn                     | {cpu_s / turns * 1000:>12.1f} |",
        f"| same, less the idle server's CPU           | {busy_ms:>12.1f} |",
        f"| floor: SDK CPU ms per turn, straight       | {direct_ms:>12.1f} |",
        f"| load client + fake model CPU ms per turn   | {client_ms:>12.1f} |",
        f"| server CPU seconds total                   | {cpu_s:>12.1f} |",
        f"| server memory at peak, RSS / PSS (MB)      | {_pair(sampler.peak)} |",
        f"| server memory at end, RSS / PSS (MB)       | {_pair(mem_end)} |",
        f"| server processes at end                    | {nprocs:>12} |",
        f"| session worker processes started           | {sampler.session_workers():>12} |",
    ]
    lines += _timeline(stats, sampler)
    lines += ["", "server CPU seconds by process (measured phase):"]
    for name, seconds in sampler.by_name()[:8]:
        lines.append(f"  {seconds:8.2f}  {name}")
    if stats.errors:
        lines += ["", "first errors:", *(f"  {e}" for e in stats.errors[:5])]
    return "\n".join(lines)


def _top(m: Measured) -> str:
    top = m.sampler.by_name()[:3]
    return ", ".join(f"{name.removeprefix('ray::').rsplit('/', 1)[-1]} {s:.1f}" for name, s in top)


def floor_table(
    ash: Measured, floors: list[tuple[str, Measured]], direct: dict, cold: bool
) -> str:
    """ash-ray beside the Ray floors (same load, same run) and the SDK alone."""

    def cpu_ms(m: Measured) -> str:
        turns = max(m.stats.turns, 1)
        busy = m.sampler.cpu_used() - m.sampler.idle_cpus * m.wall
        return f"{m.sampler.cpu_used() / turns * 1000:.1f} ({busy / turns * 1000:.1f})"

    def cells(values: list[float]) -> str:
        return f"{pct(values, 50):.0f} / {pct(values, 95):.0f}"

    def tail(values: list[float]) -> str:  # the opening wave of worker starts shows here
        return f"{pct(values, 99):.0f} / {max(values, default=0):.0f}"

    servers = [ash, *(m for _, m in floors)]
    sdk_cpu = direct["cpu_s"] / max(len(direct["done"]), 1) * 1000
    rows = [
        ("first event p50 / p95 (ms)", [cells(m.stats.first_ms) for m in servers],
         cells(direct["first"])),
        ("first event p99 / max (ms)", [tail(m.stats.first_ms) for m in servers],
         tail(direct["first"])),
        ("done p50 / p95 (ms)", [cells(m.stats.done_ms) for m in servers],
         cells(direct["done"])),
        ("of it, waiting in the load client p50 / p95 (ms)",
         [cells(m.stats.client_wait_ms) for m in servers], ""),
        *([
            ("first event p50 / p95, a session's 1st message",
             [cells(m.stats.opening_ms) for m in servers], ""),
            ("first event p50 / p95, its later messages",
             [cells(m.stats.later_ms) for m in servers], ""),
        ] if cold else []),
        ("server CPU ms a turn (less idle)", [cpu_ms(m) for m in servers], f"{sdk_cpu:.1f}"),
        ("of it, CPU s by process (top 3)", [_top(m) for m in servers], ""),
        ("turns per second", [f"{m.stats.turns / m.wall:.1f}" for m in servers], ""),
        ("errors, lost", [f"{len(m.stats.errors)}, {m.stats.lost}" for m in servers], ""),
    ]
    heads = ["ash-ray", *(label for label, _ in floors), "SDK straight to the model"]
    lines = ["", "| same load, same run | " + " | ".join(heads) + " |",
             "|---|" + "---:|" * len(heads)]
    lines += [f"| {name} | " + " | ".join([*cols, d]) + " |" for name, cols, d in rows]
    for label, m in floors:
        if cold:
            lines += ["", f"{label}, by when each message was sent:",
                      *_timeline(m.stats, m.sampler)[1:]]
        if m.stats.errors:
            lines += ["", f"{label}, first errors:", *(f"  {e}" for e in m.stats.errors[:5])]
    return "\n".join(lines)


