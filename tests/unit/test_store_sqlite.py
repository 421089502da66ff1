"""What only the SQLite store does: WAL, snapshot files, waiting out a busy database."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest

from ash_ray.errors import StoreError
from ash_ray.models import EventRecord, WriteBatch, utcnow
from ash_ray.store import SqliteStore


def events(sid: str, n: int) -> WriteBatch:
    return WriteBatch(
        events=[
            EventRecord(session_id=sid, seq=i, type="t", data={}, created_at=utcnow())
            for i in range(1, n + 1)
        ]
    )


async def test_wal_mode_and_files_under_given_dirs(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "a" / "ash.db", tmp_path / "snaps") as store:
        assert (tmp_path / "a" / "ash.db").exists() and (tmp_path / "snaps").is_dir()
        with sqlite3.connect(tmp_path / "a" / "ash.db") as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        sid = str(uuid.uuid4())
        await store.put_snapshot(sid, b"x" * 10)
        assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == [f"{sid}.tar.gz"]


async def test_snapshot_file_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "ash.db", tmp_path / "snaps") as store:
        await store.put_snapshot("../../etc/evil", b"data")
        assert await store.get_snapshot("../../etc/evil") == b"data"
        (name,) = [p.name for p in (tmp_path / "snaps").iterdir()]
        assert "/" not in name and name.endswith(".tar.gz")
        assert not (tmp_path / "etc").exists()


async def test_a_changed_snapshot_file_is_an_error_a_missing_one_is_none(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "ash.db", tmp_path / "snaps") as store:
        sid = str(uuid.uuid4())
        await store.put_snapshot(sid, b"original")
        (tmp_path / "snaps" / f"{sid}.tar.gz").write_bytes(b"tampered")
        with pytest.raises(StoreError, match="sha256"):
            await store.get_snapshot(sid)
        (tmp_path / "snaps" / f"{sid}.tar.gz").unlink()
        assert await store.get_snapshot(sid) is None


def hold_write_lock(path: Path, seconds: float, locked: threading.Event) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    locked.set()
    threading.Event().wait(seconds)
    raw.execute("COMMIT")
    raw.close()


async def test_waits_out_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "ash.db"
    async with SqliteStore(path, tmp_path / "s", busy_timeout_ms=50) as store:
        locked = threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, 0.5, locked))
        holder.start()
        await asyncio.to_thread(locked.wait)
        sid = str(uuid.uuid4())
        await store.write(events(sid, 5))  # busy at first, then retried
        holder.join()
        assert len(await store.list_events(sid)) == 5


async def test_gives_up_with_store_error_after_the_retry_timeout(tmp_path: Path) -> None:
    path = tmp_path / "ash.db"
    async with SqliteStore(path, tmp_path / "s", busy_timeout_ms=20, retry_timeout_s=0.3) as store:
        locked = threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, 1.5, locked))
        holder.start()
        await asyncio.to_thread(locked.wait)
        with pytest.raises(StoreError, match="attempts"):
            await store.write(events(str(uuid.uuid4()), 1))
        holder.join()
