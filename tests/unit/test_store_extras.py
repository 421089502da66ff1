"""Attachments and session logs in the Store (migration 3), on SQLite and Postgres."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ash_ray.errors import StoreError
from ash_ray.models import WriteBatch, new_id
from ash_ray.records import AttachmentRecord, LogLine
from ash_ray.store import PostgresStore, SqliteStore
from tests.unit.test_store import T0, make_store, session, store

__all__ = ["make_store", "store"]  # fixtures, used by name


def attachment(session_id: str, data: bytes, name: str = "a.png") -> AttachmentRecord:
    return AttachmentRecord(
        id=new_id(), session_id=session_id, filename=name, mime_type="image/png",
        size=len(data), sha256=hashlib.sha256(data).hexdigest(), created_at=T0,
    )


def lines(start: int, count: int) -> list[LogLine]:
    return [
        {"index": i, "level": "stdout", "text": f"line {i}", "ts": "2025-01-01T00:00:00Z"}
        for i in range(start, start + count)
    ]


async def test_attachments_round_trip_and_go_with_their_session(
    store: PostgresStore | SqliteStore,
) -> None:
    rec = session(1)
    await store.write(WriteBatch(sessions=[rec]))
    data = bytes(range(256)) * 100
    att = attachment(rec.id, data)
    await store.put_attachment(att, data)
    assert await store.get_attachment(att.id) == att
    assert await store.read_attachment(att.id) == data
    assert await store.list_attachments(rec.id) == [att]
    assert await store.delete_attachment(att.id) is True
    assert await store.read_attachment(att.id) is None
    assert await store.delete_attachment(att.id) is False
    kept = attachment(rec.id, b"x")
    await store.put_attachment(kept, b"x")
    await store.append_logs(rec.id, lines(0, 3), keep=10)
    await store.delete_session(rec.id)
    assert await store.get_attachment(kept.id) is None
    assert await store.list_logs(rec.id) == []


async def test_a_damaged_attachment_file_is_never_served(tmp_path: Path) -> None:
    # SQLite only: Postgres keeps the bytes in the row, there is no file to damage.
    s = SqliteStore(tmp_path / "db" / "ash.db", tmp_path / "snapshots")
    async with s:
        att = attachment("s1", b"original")
        await s.put_attachment(att, b"original")
        s._attachment_path(att.id).write_bytes(b"tampered")
        with pytest.raises(StoreError, match="sha256"):
            await s.read_attachment(att.id)


async def test_logs_are_bounded_per_session_and_resume_their_index(
    store: PostgresStore | SqliteStore,
) -> None:
    sid, other = new_id(), new_id()
    assert await store.last_log_index(sid) == -1
    await store.append_logs(sid, lines(0, 8), keep=5)
    await store.append_logs(sid, lines(6, 4), keep=5)  # a retried overlap is harmless
    await store.append_logs(other, lines(0, 2), keep=5)
    got = await store.list_logs(sid)
    assert [ln["index"] for ln in got] == [5, 6, 7, 8, 9]
    assert got[0]["text"] == "line 5" and got[0]["level"] == "stdout"
    assert [ln["index"] for ln in await store.list_logs(sid, after=7)] == [8, 9]
    assert await store.last_log_index(sid) == 9
    assert len(await store.list_logs(other)) == 2
