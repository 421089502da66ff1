"""The turn queue of each session (migration 5), one small mixin per dialect.

A message sent with ``ifBusy=queue`` is written here before it is acknowledged; the turn
a worker runs is here too (``running``) until its ``done``. A new worker of the session
reads them at bind: it continues the running turn and runs the queue in order.
"""

from __future__ import annotations

import json
from typing import Any

from ash_ray.models import QueuedTurn, WriteBatch

_COLS = "session_id, message_id, position, prompt, options, state"
_SELECT = f"SELECT {_COLS} FROM turn_queue WHERE session_id = {{p}} ORDER BY position"
_DELETE = "DELETE FROM turn_queue WHERE session_id = {p} AND message_id = {q}"
_UPSERT = (
    f"INSERT INTO turn_queue ({_COLS}) VALUES ({{marks}}) "
    "ON CONFLICT (session_id, message_id) DO UPDATE SET "
    "position = excluded.position, prompt = excluded.prompt, "
    "options = excluded.options, state = excluded.state"
)


def _args(item: QueuedTurn) -> tuple[Any, ...]:
    # The prompt as JSON: json.dumps escapes NUL, which Postgres text refuses.
    return (item.session_id, item.message_id, item.position, json.dumps(item.prompt),
            json.dumps(item.options), item.state)


def _item(row: Any) -> QueuedTurn:
    return QueuedTurn(
        session_id=row["session_id"], message_id=row["message_id"],
        position=int(row["position"]), prompt=json.loads(row["prompt"]),
        options=json.loads(row["options"]), state=row["state"],
    )


def turn_statements(batch: WriteBatch, dialect: str) -> list[tuple[str, Any]]:
    """The batch's turn-queue rows as statements for its transaction (upserts first)."""
    marks = "?, ?, ?, ?, ?, ?" if dialect == "sqlite" else "$1, $2, $3, $4, $5, $6"
    p, q = ("?", "?") if dialect == "sqlite" else ("$1", "$2")
    out: list[tuple[str, Any]] = []
    if batch.turns:
        out.append((_UPSERT.format(marks=marks), [_args(i) for i in batch.turns]))
    if batch.turns_done:
        out.append((_DELETE.format(p=p, q=q), batch.turns_done))
    return out


class SqliteTurnQueue:
    """For :class:`~ash_ray.store.sqlite.SqliteStore` (its ``_tx``, ``_retry``, ``_fetch``)."""

    _tx: Any
    _retry: Any
    _fetch: Any

    async def put_turn(self, item: QueuedTurn) -> None:
        """Insert or update one queued (or running) message; committed on return."""

        async def op() -> None:
            async with self._tx() as tx:
                await tx.execute(_UPSERT.format(marks="?, ?, ?, ?, ?, ?"), _args(item))

        await self._retry("put_turn", op)

    async def delete_turn(self, session_id: str, message_id: str) -> None:
        async def op() -> None:
            async with self._tx() as tx:
                await tx.execute(_DELETE.format(p="?", q="?"), (session_id, message_id))

        await self._retry("delete_turn", op)

    async def list_turns(self, session_id: str) -> list[QueuedTurn]:
        """The session's queue in order (the running turn first, when there is one)."""
        rows = await self._fetch("list_turns", _SELECT.format(p="?"), (session_id,))
        return [_item(r) for r in rows]


class PostgresTurnQueue:
    """For :class:`~ash_ray.store.postgres.PostgresStore` (its ``_run`` and ``_fetch``)."""

    _run: Any
    _fetch: Any

    async def put_turn(self, item: QueuedTurn) -> None:
        """Insert or update one queued (or running) message; committed on return."""

        async def fn(conn: Any) -> None:
            await conn.execute(_UPSERT.format(marks="$1, $2, $3, $4, $5, $6"), *_args(item))

        await self._run("put_turn", fn)

    async def delete_turn(self, session_id: str, message_id: str) -> None:
        async def fn(conn: Any) -> None:
            await conn.execute(_DELETE.format(p="$1", q="$2"), session_id, message_id)

        await self._run("delete_turn", fn)

    async def list_turns(self, session_id: str) -> list[QueuedTurn]:
        """The session's queue in order (the running turn first, when there is one)."""
        rows = await self._fetch("list_turns", _SELECT.format(p="$1"), session_id)
        return [_item(r) for r in rows]
