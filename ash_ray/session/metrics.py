"""Ray metrics of session workers, tagged by agent (never by session: unbounded cardinality)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import psutil
from ray.util import metrics

from ash_ray.models import Usage

_LATENCY_BOUNDARIES_MS: list[float] = [
    50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000
]


class SessionMetrics:
    """Counters and a histogram exported through Ray's metrics agent to the dashboard."""

    def __init__(self) -> None:
        tags = ("agent",)
        self.turns = metrics.Counter("ash_turns_total", "Turns run by sessions.", tags)
        self.model_calls = metrics.Counter(
            "ash_model_calls_total", "Model requests made by turns.", tags
        )
        self.tokens = metrics.Counter(
            "ash_tokens_total", "Tokens used by turns, by kind.", ("agent", "kind")
        )
        self.tool_calls = metrics.Counter(
            "ash_tool_calls_total", "Tool calls made by turns.", ("agent", "tool")
        )
        # Not ash_turn_latency_ms: that is the registry's cluster-wide one on /metrics.
        self.turn_latency = metrics.Histogram(
            "ash_worker_turn_latency_ms", "Wall time of a turn, by agent.",
            _LATENCY_BOUNDARIES_MS, tags,
        )

    def turn(self, agent: str, usage: Usage, latency_ms: float, model_calls: int) -> None:
        tags = {"agent": agent}
        self.turns.inc(1, tags)
        if model_calls:
            self.model_calls.inc(model_calls, tags)
        for kind, value in usage.model_dump().items():
            if value:
                self.tokens.inc(value, {"agent": agent, "kind": kind})
        self.turn_latency.observe(latency_ms, tags)

    def tool_call(self, agent: str, tool: str) -> None:
        self.tool_calls.inc(1, {"agent": agent, "tool": tool})


def rss_mb() -> float:
    """This process's resident memory, MiB."""
    return float(psutil.Process().memory_info().rss) / 2**20


@dataclasses.dataclass
class TurnTally:
    """What a turn's events add up to, for its metrics, usage row and stats."""

    usage: Usage = dataclasses.field(default_factory=Usage)
    model_calls: int = 0
    tool_calls: int = 0
    first_ms: float | None = None

    def see(self, type_: str, data: dict[str, Any], started: float) -> None:
        if self.first_ms is None and type_ in ("text_delta", "message"):
            self.first_ms = (time.perf_counter() - started) * 1000
        if type_ == "tool_use":
            self.tool_calls += 1
        if type_ == "message" and data.get("type") == "result":
            self.usage = Usage.model_validate(data.get("usage") or {})
            self.model_calls = int(data.get("num_turns") or 0)
