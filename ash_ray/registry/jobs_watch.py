"""The jobs actor (queue worker, eval runner) runs only while there is work for it.

An idle server does not keep it: it is a Ray worker process of its own (about 120 MiB
PSS). The ingress creates it on the first queue, usage or evals call; the registry starts
it whenever the Store holds unfinished queue items or eval runs, at its own start and on
every sweep, so that work left by a crashed server, or enqueued by another cluster on the
same database, is picked up without waiting for a request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ash_ray.config import Settings
from ash_ray.store._sql import Db
from ash_ray.store.base import Store
from ash_ray.store.evals import EvalStore
from ash_ray.store.queue import QueueStore

logger = logging.getLogger(__name__)

StartJobs = Callable[[Settings], object]


class JobsWatch:
    def __init__(self, settings: Settings, store: Store, start_jobs: StartJobs | None) -> None:
        self.settings = settings
        self.start_jobs = start_jobs
        try:
            db = Db(store)
        except TypeError:  # a store without SQL (unit tests' fakes): nothing to watch
            self.start_jobs = None
            return
        self.queue = QueueStore(db)
        self.evals = EvalStore(db)

    async def check(self) -> bool:
        """Start the jobs actor (idempotent) when unfinished work waits; True if it did."""
        if self.start_jobs is None:
            return False
        if not (await self.queue.any_unfinished() or await self.evals.any_unfinished_run()):
            return False
        await asyncio.to_thread(self.start_jobs, self.settings)
        return True

    async def check_logged(self) -> None:
        try:
            if await self.check():
                logger.debug("unfinished queue items or eval runs: the jobs actor runs")
        except Exception:
            logger.exception("could not start the jobs actor for unfinished work")
