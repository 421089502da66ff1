"""Queue items in the Store: add, read, cancel, and the worker's lease protocol.

A worker *claims* the best runnable item (priority, then age) with ONE conditional
``UPDATE ... RETURNING``: the row changes from runnable to ``processing`` with the
worker's ``lease_owner`` and ``lease_expires_at``, so two workers (two ash-ray clusters on
one database) can never both win it. Postgres picks the row ``FOR UPDATE SKIP LOCKED`` so
racing claimers take different rows instead of queueing on one. Runnable means
``pending`` and due (``next_attempt_at``), or ``processing`` under a lease that expired
(its worker died). Every later write of a claimed item is conditional on the lease, so a
worker that lost its lease cannot complete or fail the item.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from ash_ray.models import new_id, utcnow
from ash_ray.store._sql import Db

QueueStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
STATUSES: tuple[QueueStatus, ...] = ("pending", "processing", "completed", "failed", "cancelled")

_RUNNABLE = (
    "((status = 'pending' AND next_attempt_at <= ?) "
    "OR (status = 'processing' AND lease_expires_at < ?))"
)


class QueueStore:
    """Queue items of one database; ``tenant`` scopes every read and write of the API."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def item(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row as the row dict the API shapes (timestamps as datetimes)."""
        out = dict(row)
        for key in ("created_at", "started_at", "completed_at", "next_attempt_at",
                    "lease_expires_at"):
            out[key] = self.db.ts_in(row.get(key))
        return out

    async def any_unfinished(self) -> bool:
        """Any item of any tenant still pending or processing (work for a queue worker)."""
        found = await self.db.one(
            "queue_any_unfinished",
            "SELECT id FROM queue_items WHERE status IN ('pending', 'processing') LIMIT 1",
        )
        return found is not None

    async def add(
        self, *, agent_name: str, prompt: str, session_id: str | None, priority: int,
        max_retries: int, tenant: str = "default",
    ) -> dict[str, Any]:
        now = self.db.ts(utcnow())
        row = await self.db.one(
            "queue_add",
            "INSERT INTO queue_items (id, tenant_id, agent_name, prompt, session_id, status, "
            "priority, retry_count, max_retries, next_attempt_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', ?, 0, ?, ?, ?) RETURNING *",
            (new_id(), tenant, agent_name, prompt, session_id, priority, max_retries, now, now),
        )
        assert row is not None
        return self.item(row)

    async def get(self, item_id: str, tenant: str = "default") -> dict[str, Any] | None:
        row = await self.db.one(
            "queue_get", "SELECT * FROM queue_items WHERE id = ? AND tenant_id = ?",
            (item_id, tenant),
        )
        return self.item(row) if row else None

    async def list(
        self, *, status: str | None = None, limit: int = 50, tenant: str = "default"
    ) -> list[dict[str, Any]]:
        """Newest first."""
        where, args = "tenant_id = ?", [tenant]
        if status is not None:
            where += " AND status = ?"
            args.append(status)
        found = await self.db.fetch(
            "queue_list",
            f"SELECT * FROM queue_items WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*args, limit),
        )
        return [self.item(r) for r in found]

    async def stats(self, tenant: str = "default") -> dict[str, int]:
        found = await self.db.fetch(
            "queue_stats",
            "SELECT status, COUNT(*) AS n FROM queue_items WHERE tenant_id = ? GROUP BY status",
            (tenant,),
        )
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        counts.update({r["status"]: int(r["n"]) for r in found})
        return counts

    async def cancel(self, item_id: str, tenant: str = "default") -> dict[str, Any] | None:
        """Cancel a pending item; None when it is not pending (or not there)."""
        row = await self.db.one(
            "queue_cancel",
            "UPDATE queue_items SET status = 'cancelled', completed_at = ? "
            "WHERE id = ? AND tenant_id = ? AND status = 'pending' RETURNING *",
            (self.db.ts(utcnow()), item_id, tenant),
        )
        return self.item(row) if row else None

    # ------------------------------------------------------------ the worker's side

    async def claim(self, owner: str, lease_s: float) -> dict[str, Any] | None:
        """Take the best runnable item under a lease for ``owner``; None when none is."""
        now = utcnow()
        lock = " FOR UPDATE SKIP LOCKED" if self.db.kind == "postgres" else ""
        row = await self.db.one(
            "queue_claim",
            "UPDATE queue_items SET status = 'processing', lease_owner = ?, "
            "lease_expires_at = ?, started_at = COALESCE(started_at, ?) "
            f"WHERE id = (SELECT id FROM queue_items WHERE {_RUNNABLE} "
            f"ORDER BY priority DESC, created_at ASC, id LIMIT 1{lock}) "
            f"AND {_RUNNABLE} RETURNING *",
            (owner, self.db.ts(now + timedelta(seconds=lease_s)), self.db.ts(now),
             *(self.db.ts(now),) * 4),
        )
        return self.item(row) if row else None

    async def renew(self, item_id: str, owner: str, lease_s: float) -> bool:
        """Extend the lease; False when ``owner`` no longer holds it."""
        row = await self.db.one(
            "queue_renew",
            "UPDATE queue_items SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? "
            "AND status = 'processing' RETURNING id",
            (self.db.ts(utcnow() + timedelta(seconds=lease_s)), item_id, owner),
        )
        return row is not None

    async def expire_leases(self, owner: str) -> int:
        """End the leases of ``owner``'s previous life (a restarted worker) at once."""
        found = await self.db.fetch(
            "queue_expire",
            "UPDATE queue_items SET lease_expires_at = ? WHERE lease_owner = ? "
            "AND status = 'processing' RETURNING id",
            (self.db.ts(utcnow() - timedelta(seconds=1)), owner),
        )
        return len(found)

    async def set_session(
        self, item_id: str, owner: str, session_id: str, turn_base: int, own: bool = False
    ) -> bool:
        """Remember the item's session and its turn count before the item's turn.

        ``own``: the worker opened this session for the item (kept once set), so it is
        the worker's to release when the item is done; a session the item named is not.
        """
        mark = ", own_session = 1" if own else ""
        row = await self.db.one(
            "queue_set_session",
            f"UPDATE queue_items SET session_id = ?, turn_base = ?{mark} WHERE id = ? "
            "AND lease_owner = ? AND status = 'processing' RETURNING id",
            (session_id, turn_base, item_id, owner),
        )
        return row is not None

    async def complete(self, item_id: str, owner: str, result: str | None) -> bool:
        row = await self.db.one(
            "queue_complete",
            "UPDATE queue_items SET status = 'completed', result = ?, error = NULL, "
            "completed_at = ?, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = ? AND lease_owner = ? AND status = 'processing' RETURNING id",
            (result, self.db.ts(utcnow()), item_id, owner),
        )
        return row is not None

    async def fail(
        self, item_id: str, owner: str, error: str, retry_at: datetime | None
    ) -> bool:
        """Count a failed attempt: back to ``pending`` until ``retry_at``, or ``failed``."""
        now = utcnow()
        status = "failed" if retry_at is None else "pending"
        row = await self.db.one(
            "queue_fail",
            "UPDATE queue_items SET status = ?, error = ?, retry_count = retry_count + 1, "
            "next_attempt_at = ?, completed_at = ?, lease_owner = NULL, "
            "lease_expires_at = NULL "
            "WHERE id = ? AND lease_owner = ? AND status = 'processing' RETURNING id",
            (status, error[:4000], self.db.ts(retry_at or now),
             self.db.ts(now if retry_at is None else None), item_id, owner),
        )
        return row is not None
