"""Cluster-wide numbers: kept in the registry so that every ingress replica reports the same."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_MS_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000)


class RegistryStats:
    """Prometheus collectors plus the plain counters /health reports."""

    def __init__(self) -> None:
        self.prom = CollectorRegistry()
        r = self.prom
        self.up = Gauge("ash_up", "1 while the registry serves.", registry=r)
        self.active_sessions = Gauge(
            "ash_active_sessions", "Sessions in status active.", registry=r
        )
        self.active_sandboxes = Gauge(
            "ash_active_sandboxes", "Session workers bound to a session.", registry=r
        )
        self.pool_sandboxes = Gauge(
            "ash_pool_sandboxes", "Session workers by pool state.", ["state"], registry=r
        )
        self.max_capacity = Gauge("ash_pool_max_capacity", "ASH_MAX_SANDBOXES.", registry=r)
        self.resume = Counter("ash_resume", "Session resumes by path.", ["path"], registry=r)
        self.resume_cold = Counter(
            "ash_resume_cold", "Cold resumes by where the workspace came from.", ["source"],
            registry=r,
        )
        self.created = Counter("ash_sessions_created", "Sessions created.", ["pool"], registry=r)
        self.events = Counter("ash_events_persisted", "Events written to the store.", registry=r)
        self.batches = Counter(
            "ash_worker_batches", "Batches the session workers sent to be saved.", registry=r
        )
        self.turn_ms = Histogram(
            "ash_turn_latency_ms", "Turn wall time.", buckets=_MS_BUCKETS, registry=r
        )
        self.first_token_ms = Histogram(
            "ash_first_token_latency_ms", "Turn start to first model output.",
            buckets=_MS_BUCKETS, registry=r,
        )
        self.create_ms = Histogram(
            "ash_session_create_latency_ms", "Session create in the registry.",
            buckets=_MS_BUCKETS, registry=r,
        )
        self.resume_ms = Histogram(
            "ash_resume_latency_ms", "Session resume in the registry.", ["path"],
            buckets=_MS_BUCKETS, registry=r,
        )
        self.warm_hits = 0
        self.cold_hits = 0
        self.pre_warm_hits = 0
        self.up.set(1)

    def count_resume(self, path: str, source: str | None, ms: float) -> None:
        self.resume.labels(path=path).inc()
        self.resume_ms.labels(path=path).observe(ms)
        if path == "warm":
            self.warm_hits += 1
        else:
            self.cold_hits += 1
            self.resume_cold.labels(source=source or "fresh").inc()

    def observe_turn(self, stats: dict) -> None:
        if stats.get("turn_ms") is not None:
            self.turn_ms.observe(stats["turn_ms"])
        if stats.get("first_token_ms") is not None:
            self.first_token_ms.observe(stats["first_token_ms"])

    def text(self) -> bytes:
        return generate_latest(self.prom)
