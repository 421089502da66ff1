"""The queue worker and the eval runner act as the item's (run's) tenant (no Ray).

A real SQLite Store; the sessions are a recording stand-in for the registry's clients.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ash_ray.actor_api import TurnOutcome
from ash_ray.config import Settings, load_settings
from ash_ray.jobs.evals import EvalRunner
from ash_ray.jobs.queue_worker import QueueWorker, attempt_message_id
from ash_ray.models import SessionRecord, utcnow
from ash_ray.store import SqliteStore
from ash_ray.store._sql import Db
from ash_ray.store.evals import EvalStore
from ash_ray.store.queue import QueueStore


class Sessions:
    """Sessions by id with their tenants; every create, ask and end recorded."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionRecord] = {}
        self.created: list[tuple[str, str, dict[str, Any]]] = []
        self.asked: list[tuple[str, str]] = []
        self.message_ids: list[str | None] = []

    def add(self, agent: str, tenant: str) -> SessionRecord:
        sid, now = str(uuid.uuid4()), utcnow()
        self.sessions[sid] = SessionRecord(
            id=sid, agent_name=agent, tenant_id=tenant, sandbox_id=sid, status="active",
            created_at=now, last_active_at=now,
        )  # fmt: skip
        return self.sessions[sid]

    async def create_session(self, agent_name: str, tenant: str, **config: Any) -> SessionRecord:
        self.created.append((agent_name, tenant, config))
        return self.add(agent_name, tenant)

    async def get_session(self, session_id: str) -> SessionRecord:
        return self.sessions[session_id]

    async def ask(
        self, session_id: str, prompt: str, message_id: str | None = None
    ) -> TurnOutcome:
        self.asked.append((session_id, prompt))
        self.message_ids.append(message_id)
        rec = self.sessions[session_id]
        self.sessions[session_id] = rec.model_copy(update={"num_turns": rec.num_turns + 1})
        return {"result": f"answer to {prompt}"}  # type: ignore[typeddict-item]

    async def version_prompt(self, agent_name: str, number: int, tenant: str) -> str | None:
        return None

    async def stop(self, session_id: str) -> None:
        pass

    async def end(self, session_id: str) -> None:
        pass


@pytest.fixture()
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    store = SqliteStore(tmp_path / "ash.db", tmp_path / "snap")
    await store.open()
    yield Db(store)
    await store.close()


def _settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, queue_poll_s=0.01)


async def test_a_queue_item_runs_in_a_session_of_its_tenant(db: Db, tmp_path: Path) -> None:
    q, sessions = QueueStore(db), Sessions()
    worker = QueueWorker(_settings(tmp_path), q, sessions, "w")
    item = await q.add(agent_name="bot", prompt="hi", session_id=None, priority=0,
                       max_retries=0, tenant="acme")
    claimed = await q.claim("w", 60)
    assert claimed is not None
    await worker._run(claimed)
    assert [(a, t) for a, t, _ in sessions.created] == [("bot", "acme")]
    done = await q.get(item["id"], "acme")
    assert done is not None and done["status"] == "completed"
    assert sessions.sessions[done["session_id"]].tenant_id == "acme"


async def test_a_queue_item_never_runs_in_another_tenants_session(
    db: Db, tmp_path: Path
) -> None:
    # The route refuses such an item (404); a row written around it still must not run.
    q, sessions = QueueStore(db), Sessions()
    worker = QueueWorker(_settings(tmp_path), q, sessions, "w")
    theirs = sessions.add("bot", "globex")
    item = await q.add(agent_name="bot", prompt="steal", session_id=theirs.id, priority=0,
                       max_retries=0, tenant="acme")
    claimed = await q.claim("w", 60)
    assert claimed is not None
    await worker._run(claimed)
    assert sessions.asked == [] and sessions.created == []
    failed = await q.get(item["id"], "acme")
    assert failed is not None and failed["status"] == "failed"
    assert failed["error"] == f"session {theirs.id} not found"


async def test_an_eval_run_opens_its_sessions_as_its_tenant(db: Db, tmp_path: Path) -> None:
    ev, sessions = EvalStore(db), Sessions()
    runner = EvalRunner(_settings(tmp_path), ev, sessions, "w")
    await ev.create_case("bot", {"question": "q1"}, tenant="acme")
    await ev.create_case("bot", {"question": "q2"}, tenant="acme")
    run = await ev.create_run("bot", None, None, None, tenant="acme")
    claimed = await ev.claim_run("w", 60)
    assert claimed is not None
    await runner._run(claimed)
    assert sorted((a, t) for a, t, _ in sessions.created) == [("bot", "acme")] * 2
    done = await ev.get_run("bot", run["id"], tenant="acme")
    assert done is not None and done["status"] == "completed" and done["completedCases"] == 2


async def test_a_restarted_queue_worker_asks_again_with_the_same_message_id(
    db: Db, tmp_path: Path
) -> None:
    """So that the session worker joins the item's turn if it still runs (or replays it if
    it just ended) instead of running the prompt twice; a retry after a failed turn has a
    new baseline and so a new message id, and runs again."""
    q, sessions = QueueStore(db), Sessions()
    mine = sessions.add("bot", "default")
    item = await q.add(agent_name="bot", prompt="once", session_id=mine.id, priority=0,
                       max_retries=1)
    claimed = await q.claim("w", 60)
    assert claimed is not None
    await QueueWorker(_settings(tmp_path), q, sessions, "w")._attempt(claimed)
    # The queue worker dies while that turn still runs: the session has not counted it.
    sessions.sessions[mine.id] = mine.model_copy(update={"num_turns": 0})
    row = await q.get(item["id"])
    assert row is not None and row["turn_base"] == 0
    await QueueWorker(_settings(tmp_path), q, sessions, "w")._attempt(row)
    first, again = sessions.message_ids
    assert first == again == attempt_message_id(item["id"], 0)
    assert attempt_message_id(item["id"], 1) != first  # the retry's, after a failed turn
