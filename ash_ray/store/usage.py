"""Usage figures from the Store: per-turn counters as Ash's events, their sums, analytics.

Each turn writes one ``usage`` row with a column per counter (see migration 7). Ash's
API speaks of *events* (one per counter and turn, ``eventType`` + ``value``); a row turns
into one event per counter above zero, with an id derived from the row (a UUID5, so the
same event has the same id on every read). Sums are SQL ``SUM`` over the same filters,
so the stats are exact whatever the number of rows.

Usage rows belong to their session's tenant: every query keeps the rows of the filter's
tenant's sessions (a subquery on ``sessions``, indexed by tenant), so no tenant column
has to be kept in step on the turn's write path, and a deleted session's usage (deleted
with it) cannot linger under another owner.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ash_ray.models import DEFAULT_TENANT
from ash_ray.store._sql import Db

# (column, Ash's event type, Ash's stats field, scale to the wire unit)
COUNTERS: tuple[tuple[str, str, str, float], ...] = (
    ("input_tokens", "input_tokens", "totalInputTokens", 1),
    ("output_tokens", "output_tokens", "totalOutputTokens", 1),
    ("cache_creation_tokens", "cache_creation_tokens", "totalCacheCreationTokens", 1),
    ("cache_read_tokens", "cache_read_tokens", "totalCacheReadTokens", 1),
    ("tool_calls", "tool_call", "totalToolCalls", 1),
    ("messages", "message", "totalMessages", 1),
    ("compute_ms", "compute_seconds", "totalComputeSeconds", 0.001),
)
_NS = uuid.UUID("6f1d7c1e-8a51-4a0e-9d0c-2f6c1b0a7e15")


@dataclass(frozen=True)
class UsageFilter:
    session_id: str | None = None
    agent_name: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    tenant: str = DEFAULT_TENANT

    def window(self, db: Db) -> tuple[str, list[Any]]:
        """The ``created_at`` bounds alone (any table with that column)."""
        return _clauses((("created_at >= ?", db.ts(self.after)),
                         ("created_at <= ?", db.ts(self.before))))

    def where(self, db: Db) -> tuple[str, list[Any]]:
        """The usage rows of the tenant's sessions that match every filter."""
        window, window_args = self.window(db)
        where, args = _clauses((
            ("session_id IN (SELECT id FROM sessions WHERE tenant_id = ?)", self.tenant),
            ("session_id = ?", self.session_id),
            ("agent_name = ?", self.agent_name),
        ))
        return f"{where} AND {window}", [*args, *window_args]


def _clauses(pairs: tuple[tuple[str, Any], ...]) -> tuple[str, list[Any]]:
    """The clauses whose value is given, ANDed, with their values."""
    clauses, args = ["1 = 1"], []
    for clause, value in pairs:
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return " AND ".join(clauses), args


def _zero_stats() -> dict[str, float]:
    return {field: 0 for _, _, field, _ in COUNTERS}


class UsageQueries:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def events(self, flt: UsageFilter, limit: int = 100) -> list[dict[str, Any]]:
        """Ash's usage events, newest first, at most ``limit``."""
        where, args = flt.where(self.db)
        cols = ", ".join(col for col, *_ in COUNTERS)
        found = await self.db.fetch(
            "usage_events",
            f"SELECT session_id, turn, created_at, agent_name, {cols} FROM usage "
            f"WHERE {where} ORDER BY created_at DESC, session_id, turn LIMIT ?",
            (*args, limit),
        )
        out: list[dict[str, Any]] = []
        for row in found:
            created = self.db.ts_in(row["created_at"])
            assert created is not None
            for col, event_type, _, scale in COUNTERS:
                if row[col] > 0:
                    key = f"{row['session_id']}/{row['turn']}/{created.isoformat()}/{event_type}"
                    out.append({
                        "id": str(uuid.uuid5(_NS, key)), "sessionId": row["session_id"],
                        "agentName": row["agent_name"], "eventType": event_type,
                        "value": row[col] * scale if scale != 1 else int(row[col]),
                        "createdAt": created, "tenantId": flt.tenant,
                    })  # fmt: skip
        return out[:limit]

    async def stats(self, flt: UsageFilter) -> dict[str, float]:
        where, args = flt.where(self.db)
        sums = ", ".join(f"COALESCE(SUM({col}), 0) AS {col}" for col, *_ in COUNTERS)
        row = await self.db.one("usage_stats", f"SELECT {sums} FROM usage WHERE {where}", args)
        stats = _zero_stats()
        if row:
            for col, _, field, scale in COUNTERS:
                total = int(row[col])
                stats[field] = total * scale if scale != 1 else total
        return stats

    async def analytics(
        self, after: datetime | None, before: datetime | None, tenant: str = DEFAULT_TENANT
    ) -> dict[str, Any]:
        """The tenant's agents, sessions by status (created in the window), usage and eval
        runs."""
        flt = UsageFilter(after=after, before=before, tenant=tenant)
        window, args = flt.window(self.db)
        agents = await self.db.one(
            "analytics_agents", "SELECT COUNT(*) AS n FROM agents WHERE tenant_id = ?", (tenant,)
        )
        by_status = await self.db.fetch(
            "analytics_sessions",
            f"SELECT status, COUNT(*) AS n FROM sessions WHERE tenant_id = ? AND {window} "
            "GROUP BY status",
            (tenant, *args),
        )
        runs = await self.db.fetch(
            "analytics_evals",
            f"SELECT status, COUNT(*) AS n FROM eval_runs WHERE tenant_id = ? AND {window} "
            "GROUP BY status",
            (tenant, *args),
        )
        sessions = {r["status"]: int(r["n"]) for r in by_status}
        eval_runs = {r["status"]: int(r["n"]) for r in runs}
        return {
            "agents": {"total": int(agents["n"]) if agents else 0},
            "sessions": {"total": sum(sessions.values()), "byStatus": sessions},
            "usage": await self.stats(flt),
            "evals": {"totalRuns": sum(eval_runs.values()), "byStatus": eval_runs},
        }
