"""Store write throughput: events/s through ``Store.write`` vs raw driver executemany.

Each batch is what the registry's write-behind flush sends: one session upsert (its
``last_seq`` moves) plus ``N`` events of ~100 bytes, written one batch after another.
The baseline rows do the same inserts with the bare driver (aiosqlite / asyncpg
``executemany`` in one transaction, rows prepared in advance), without our layer.
SQLite runs with ``synchronous=FULL``; Postgres is a throwaway cluster with fsync on.

    PYTHONPATH=. python benchmarks/store_write.py [--backends sqlite,postgres] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite
import asyncpg

from ash_ray.models import EventRecord, SessionRecord, WriteBatch, utcnow
from ash_ray.store import PostgresStore, SqliteStore
from tests.pg import TempPostgres

BATCH_SIZES = (1, 10, 100, 500)
DELTA = "The quick brown fox jumps over the lazy dog; " * 2


def batches(batch_size: int, total: int) -> list[WriteBatch]:
    sid, now = str(uuid.uuid4()), utcnow()
    out = []
    for first in range(1, total + 1, batch_size):
        seqs = range(first, min(first + batch_size, total + 1))
        session = SessionRecord(
            id=sid, agent_name="bench", sandbox_id="sb", status="active",
            created_at=now, last_active_at=now, last_seq=seqs[-1],
        )  # fmt: skip
        events = [
            EventRecord(
                session_id=sid, seq=s, type="text_delta", data={"delta": DELTA}, created_at=now
            )
            for s in seqs
        ]
        out.append(WriteBatch(sessions=[session], events=events))
    return out


async def timed(work: list[WriteBatch], write: Callable[[WriteBatch], Awaitable[None]]) -> float:
    """Events per second of writing ``work`` one batch after another."""
    started = time.perf_counter()
    for batch in work:
        await write(batch)
    return sum(len(b.events) for b in work) / (time.perf_counter() - started)


# The columns of the baselines' session rows (the table has more, with defaults).
_SESSION_COLS = (
    "id, agent_name, sandbox_id, status, created_at, last_active_at, parent_session_id, "
    "config, usage, num_turns, last_seq"
)

# ---------------------------------------------------------------- SQLite


async def sqlite_ours(work: list[WriteBatch], tmp: Path) -> float:
    async with SqliteStore(tmp / f"{uuid.uuid4()}.db", tmp / "snaps") as store:
        return await timed(work, store.write)


async def sqlite_raw(work: list[WriteBatch], tmp: Path) -> float:
    async with SqliteStore(tmp / (name := f"{uuid.uuid4()}.db"), tmp / "snaps"):
        pass  # only to create the schema
    prepared = [_raw_rows(b, iso=True) for b in work]
    db = await aiosqlite.connect(tmp / name, isolation_level=None)
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = FULL")
    it = iter(prepared)

    async def write(_: WriteBatch) -> None:
        session, events = next(it)
        await db.execute("BEGIN IMMEDIATE")
        await db.execute(
            f"INSERT INTO sessions ({_SESSION_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (id) DO UPDATE "
            "SET last_seq = excluded.last_seq, last_active_at = excluded.last_active_at",
            session,
        )
        await db.executemany("INSERT INTO events VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING", events)
        await db.execute("COMMIT")

    try:
        return await timed(work, write)
    finally:
        await db.close()


def _raw_rows(batch: WriteBatch, iso: bool) -> tuple[tuple[object, ...], list[tuple[object, ...]]]:
    import json

    s = batch.sessions[0]

    def ts(value: object) -> object:
        return value.isoformat(timespec="microseconds") if iso else value  # type: ignore[attr-defined]

    session = (
        s.id, s.agent_name, s.sandbox_id, s.status, ts(s.created_at), ts(s.last_active_at),
        None, s.config.model_dump_json(), s.usage.model_dump_json(), s.num_turns, s.last_seq,
    )  # fmt: skip
    events = [
        (e.session_id, e.seq, e.type, json.dumps(e.data), ts(e.created_at)) for e in batch.events
    ]
    return session, events


# ---------------------------------------------------------------- Postgres


async def pg_ours(work: list[WriteBatch], pg: TempPostgres) -> float:
    async with PostgresStore(pg.create_database()) as store:
        return await timed(work, store.write)


async def pg_raw(work: list[WriteBatch], pg: TempPostgres) -> float:
    url = pg.create_database()
    async with PostgresStore(url):
        pass  # only to create the schema
    prepared = iter([_raw_rows(b, iso=False) for b in work])
    conn = await asyncpg.connect(url)

    async def write(_: WriteBatch) -> None:
        session, events = next(prepared)
        async with conn.transaction():
            await conn.execute(
                f"INSERT INTO sessions ({_SESSION_COLS}) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) "
                "ON CONFLICT (id) DO UPDATE SET last_seq = EXCLUDED.last_seq, "
                "last_active_at = EXCLUDED.last_active_at",
                *session,
            )
            await conn.executemany(
                "INSERT INTO events VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING", events
            )

    try:
        return await timed(work, write)
    finally:
        await conn.close()


# ---------------------------------------------------------------- main


async def run(backends: list[str], quick: bool) -> list[tuple[str, list[float]]]:
    totals = {1: 500, 10: 2000, 100: 10_000, 500: 20_000} if quick else {
        1: 2000, 10: 10_000, 100: 40_000, 500: 100_000
    }  # fmt: skip
    work = {size: batches(size, totals[size]) for size in BATCH_SIZES}
    table: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="ash-bench-") as tmp:
        if "sqlite" in backends:
            for label, fn in (
                ("sqlite   Store.write", sqlite_ours),
                ("sqlite   raw aiosqlite", sqlite_raw),
            ):
                table.append((label, [await fn(work[s], Path(tmp)) for s in BATCH_SIZES]))
    if "postgres" in backends:
        with TempPostgres(durable=True) as pg:
            for label, pfn in (("postgres Store.write", pg_ours), ("postgres raw asyncpg", pg_raw)):
                table.append((label, [await pfn(work[s], pg) for s in BATCH_SIZES]))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--quick", action="store_true", help="fewer events per cell")
    args = parser.parse_args()
    table = asyncio.run(run(args.backends.split(","), args.quick))
    header = f"{'events/s':<24}" + "".join(f"{f'batch {s}':>12}" for s in BATCH_SIZES)
    print(header)
    print("-" * len(header))
    for label, values in table:
        print(f"{label:<24}" + "".join(f"{v:>12,.0f}" for v in values))


if __name__ == "__main__":
    main()
