"""How a WriteBatch becomes ONE Postgres statement.

A data-modifying CTE holds an ``INSERT ... SELECT * FROM unnest($1::text[], ...)`` per
table. A single statement is atomic on its own, so a batch costs one round trip instead
of BEGIN + four inserts + COMMIT, whatever its size; each table's rows travel as one
array per column, and ``unnest`` of empty arrays inserts nothing. CockroachDB accepts
the same SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ash_ray.models import WriteBatch
from ash_ray.store import _rows as rows

_INTEGER_COLS = frozenset(
    {"version", "num_turns", "last_seq", "sequence", "seq", "turn", *rows.USAGE_COUNTERS}
)
_TABLES = (
    ("sessions", rows.SESSION_COLS),
    ("messages", rows.MESSAGE_COLS),
    ("events", rows.EVENT_COLS),
    ("usage", rows.USAGE_COLS),
)


def pg_type(col: str) -> str:
    """The Postgres type of a column (for the ``unnest`` array casts)."""
    if col.endswith("_at"):
        return "timestamptz"
    return "bigint" if col in _INTEGER_COLS else "text"


def _statement() -> str:
    upsert = "ON CONFLICT (id) DO UPDATE SET " + ", ".join(
        f"{c} = EXCLUDED.{c}" for c in rows.SESSION_COLS if c not in ("id", "created_at")
    )
    parts, n = [], 0
    for table, cols in _TABLES:
        arrays = ", ".join(f"${n + i}::{pg_type(c)}[]" for i, c in enumerate(cols, start=1))
        n += len(cols)
        tail = upsert if table == "sessions" else "ON CONFLICT DO NOTHING"
        parts.append(
            f"w_{table} AS (INSERT INTO {table} ({rows.columns(cols)}) "
            f"SELECT * FROM unnest({arrays}) {tail})"
        )
    return "WITH " + ",\n".join(parts) + "\nSELECT 1"


WRITE_BATCH = _statement()
"""The statement; its arguments come from :func:`batch_arrays`."""


def _columns(table_rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    if not table_rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*table_rows, strict=True)]


def batch_arrays(batch: WriteBatch, ts: rows.TsOut) -> list[list[Any]]:
    """The arguments of :data:`WRITE_BATCH`: one list per column of every table.

    Sessions are deduplicated (last record wins): an upsert may touch a row only once.
    Records that would not read back are left out (see :func:`rows.batch_rows`).
    """
    sessions, messages, events, usage = rows.batch_rows(batch, ts)
    return [
        *_columns(sessions, len(rows.SESSION_COLS)),
        *_columns(messages, len(rows.MESSAGE_COLS)),
        *_columns(events, len(rows.EVENT_COLS)),
        *_columns(usage, len(rows.USAGE_COLS)),
    ]
