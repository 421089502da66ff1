"""The jobs actor runs only while the Store holds work for it (issue 14: an idle server
keeps no jobs process): the registry's watch starts it for unfinished queue items and
eval runs, of any tenant, and not for finished ones. SQLite and a real Postgres."""

from __future__ import annotations

from pathlib import Path

from ash_ray.config import Settings
from ash_ray.registry.jobs_watch import JobsWatch
from ash_ray.store._sql import Db
from ash_ray.store.evals import EvalStore
from ash_ray.store.queue import QueueStore


class Starts:
    def __init__(self) -> None:
        self.calls: list[Settings] = []

    def __call__(self, settings: Settings) -> None:
        self.calls.append(settings)


async def test_the_jobs_actor_is_started_for_unfinished_work_only(db: Db, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    starts = Starts()
    watch = JobsWatch(settings, db.store, starts)
    assert not await watch.check() and starts.calls == []  # an empty store: no process

    queue = QueueStore(db)
    item = await queue.add(agent_name="a", prompt="p", session_id=None, priority=0,
                           max_retries=0, tenant="acme")
    assert await watch.check() and starts.calls == [settings]  # another tenant's, too
    claimed = await queue.claim("owner", 60)
    assert claimed is not None and claimed["id"] == item["id"]
    assert await watch.check()  # processing is unfinished too
    assert await queue.complete(item["id"], "owner", "done")
    assert not await watch.check() and len(starts.calls) == 2

    evals = EvalStore(db)
    await evals.create_case("bot", {"question": "q"})
    run = await evals.create_run("bot", None, None, None)
    assert await watch.check() and len(starts.calls) == 3
    assert await evals.claim_run("owner", 60) is not None
    assert await evals.finish_run(run["id"], "owner")
    assert not await watch.check() and len(starts.calls) == 3


async def test_without_a_starter_or_sql_there_is_nothing_to_watch(db: Db, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    await QueueStore(db).add(agent_name="a", prompt="p", session_id=None, priority=0,
                             max_retries=0)
    assert not await JobsWatch(settings, db.store, None).check()
    assert not await JobsWatch(settings, object(), Starts()).check()  # type: ignore[arg-type]
