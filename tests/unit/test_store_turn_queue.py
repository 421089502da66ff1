"""The turn queue's store part (migration 5), on SQLite and a real Postgres."""

from __future__ import annotations

from ash_ray.models import QueuedTurn, WriteBatch
from ash_ray.store import Store
from tests.unit.test_store import make_store, session, store  # noqa: F401  (fixtures)


async def test_queued_turns_round_trip_in_order_update_and_go_with_their_session(
    store: Store,  # noqa: F811
) -> None:
    rec = session()
    await store.write(WriteBatch(sessions=[rec]))
    later = QueuedTurn(session_id=rec.id, message_id="m2", position=20, prompt="second",
                       options={"model": "m", "if_busy": "queue"})
    first = QueuedTurn(session_id=rec.id, message_id="m1", position=10, prompt="first \x00 nul")
    await store.put_turn(later)
    await store.put_turn(first)
    assert await store.list_turns(rec.id) == [first, later]
    running = first.model_copy(update={"state": "running"})
    await store.put_turn(running)  # the same message, now running
    assert await store.list_turns(rec.id) == [running, later]
    await store.delete_turn(rec.id, "m1")
    await store.delete_turn(rec.id, "m1")  # twice is harmless
    assert await store.list_turns(rec.id) == [later]
    assert await store.list_turns("other") == []
    await store.delete_session(rec.id)
    assert await store.list_turns(rec.id) == []


async def test_a_write_batch_carries_the_running_turn_and_the_ended_one_in_its_transaction(
    store: Store,  # noqa: F811
) -> None:
    rec = session()
    queued = QueuedTurn(session_id=rec.id, message_id="m1", position=10, prompt="first")
    await store.write(WriteBatch(sessions=[rec], turns=[queued]))
    running = queued.model_copy(update={"state": "running"})
    later = QueuedTurn(session_id=rec.id, message_id="m2", position=20, prompt="second")
    await store.write(WriteBatch(turns=[running, later]))
    assert await store.list_turns(rec.id) == [running, later]
    # A turn that starts and ends within one flush: upserted, then deleted.
    short = QueuedTurn(session_id=rec.id, message_id="m3", position=30, prompt="short",
                       state="running")
    await store.write(WriteBatch(turns=[short], turns_done=[(rec.id, "m1"), (rec.id, "m3")]))
    assert await store.list_turns(rec.id) == [later]
    await store.write(WriteBatch(turns_done=[(rec.id, "m1")]))  # again: harmless
    assert await store.list_turns(rec.id) == [later]
