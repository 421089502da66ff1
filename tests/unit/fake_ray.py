"""A fake of :class:`ash_ray.registry.rayops.RayOps`: session workers as in-memory objects.

The registry's services talk to workers through :class:`ash_ray.handles.WorkerClient`,
which calls ``handle.<method>.remote(...)`` and awaits the result; a :class:`FakeHandle`
answers that with a coroutine of the :class:`FakeWorker`'s method. A killed worker fails
every call, and its pending ``watch`` fails, as a dead Ray actor's do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ash_ray.errors import WorkerReleasing
from ash_ray.handles import WorkerClient
from ash_ray.models import SessionRecord, WriteBatch, utcnow


class WorkerDied(Exception):
    """What a call to a killed fake worker raises (a RayActorError in real life)."""


Sink = Callable[[WriteBatch, dict[str, Any]], Awaitable[None]]


class FakeWorker:
    """A bound worker saves its record through ``sink`` (the registry's ``record``)."""

    def __init__(self, sandbox_id: str, sink: Sink | None, node_id: str = "node-a") -> None:
        self.sandbox_id = sandbox_id
        self.sink = sink
        self.node_id = node_id
        self.record: SessionRecord | None = None
        self.running = False
        self.alive = True
        self.snapshot_data: bytes | None = b"tar"
        self.calls: list[str] = []
        self.start_gate: asyncio.Event | None = None
        self.release_gate: asyncio.Event | None = None  # a release waits for it when set
        # The lifecycle entries this worker was asked to number into its log.
        self.lifecycle: list[dict[str, Any]] = []
        self._died = asyncio.get_running_loop().create_future()
        self.reusable = False  # unbind() agrees (a real worker does once released)
        self.served: list[str] = []  # sessions it served before the bound one

    def scope(self, for_session: str | None) -> None:
        """The real guard's check: a call naming another session than the bound one."""
        if for_session is None:
            return
        record = self.record
        if record.id != for_session if record is not None else for_session in self.served:
            raise WorkerReleasing(f"session {for_session} is no longer on this worker")

    async def unbind(self, session_id: str) -> bool:
        self._check("unbind")
        if not self.reusable or self.record is None or self.record.id != session_id:
            return False
        self.served.append(session_id)
        self.record = None
        return True

    def kill(self) -> None:
        if self.alive:
            self.alive = False
            self._died.set_exception(WorkerDied(self.sandbox_id))
            self._died.exception()  # nobody may be watching: no "never retrieved" warning

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if not self.alive:
            raise WorkerDied(self.sandbox_id)

    async def ready(self) -> dict[str, Any]:
        self._check("ready")
        if self.start_gate is not None:  # the process is still starting
            await self.start_gate.wait()
        return {"sandboxId": self.sandbox_id, "nodeId": self.node_id}

    async def watch(self) -> None:
        await asyncio.shield(self._died)

    async def bind(self, record: SessionRecord, agent_path: str, conversation: list,
                   snapshot: bytes | None, credential: object = None) -> str:
        self._check("bind")
        self.record = record
        return self.node_id

    async def describe(self) -> dict[str, Any]:
        self._check("describe")
        if self.record is None:
            return {"sandboxId": self.sandbox_id, "bound": False}
        return {"sandboxId": self.sandbox_id, "bound": True, "sessionId": self.record.id,
                "turnRunning": self.running, "nodeId": self.node_id}

    async def set_status(
        self, status: str, wait: bool = True, event: dict[str, Any] | None = None
    ) -> SessionRecord:
        self._check("set_status")
        assert self.record is not None
        if event is not None:
            self.lifecycle.append(event)
        self.record = self.record.model_copy(update={"status": status, "last_active_at": utcnow()})
        return await self._save()

    async def update_config(self, config: dict[str, Any]) -> SessionRecord:
        self._check("update_config")
        assert self.record is not None
        self.record = self.record.model_copy(
            update={"config": self.record.config.model_copy(update=config)}
        )
        return await self._save()

    async def snapshot(self, force: bool = False) -> bytes | None:
        self._check("snapshot")
        return self.snapshot_data

    async def release(self, status: str) -> SessionRecord:
        self._check("release")
        assert self.record is not None
        if self.release_gate is not None:  # its snapshot is still being saved
            await self.release_gate.wait()
        self.lifecycle.append({"action": status})
        self.record = self.record.model_copy(update={"status": status})
        return await self._save()

    async def release_idle(self, status: str) -> SessionRecord | None:
        """Refused (None) while this worker runs a turn, whatever the registry thinks;
        it says so in a flush first, as a real worker does."""
        self._check("release_idle")
        if self.running:
            await self._save({"running": True})
            return None
        return await self.release(status)

    async def _save(self, stats: dict[str, Any] | None = None) -> SessionRecord:
        assert self.record is not None
        if self.sink is not None:
            await self.sink(WriteBatch(sessions=[self.record]), stats or {})
        return self.record


class _Method:
    def __init__(self, worker: FakeWorker, name: str) -> None:
        self.worker, self.name = worker, name

    def remote(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Like an ObjectRef: the call runs whether or not anyone awaits it."""
        scope = kwargs.pop("for_session", None)

        async def call() -> Any:
            self.worker.scope(scope)  # in the worker, as the real guard does
            return await getattr(self.worker, self.name)(*args, **kwargs)

        future = asyncio.ensure_future(call())
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return future


class FakeHandle:
    def __init__(self, worker: FakeWorker) -> None:
        self.worker = worker

    def __getattr__(self, name: str) -> _Method:
        return _Method(self.worker, name)


class FakeRayOps:
    """Workers by sandbox id, kills, and a cluster with ``slots`` session slots."""

    def __init__(self, slots: float = 0.0, cpus: float = 64.0) -> None:
        self.workers: dict[str, FakeWorker] = {}
        self.slots = slots
        self.cpus = cpus
        self.killed: list[str] = []
        self.spawned: list[str] = []
        self.sink: Sink | None = None  # set to the registry's way of saving a record
        self.start_gate: asyncio.Event | None = None  # new workers start when it is set
        self.reusable = False  # new workers agree to unbind (go back to the pool)

    def client(self, worker: FakeWorker) -> WorkerClient:
        return WorkerClient(FakeHandle(worker))  # type: ignore[arg-type]

    def alive(self) -> list[FakeWorker]:
        return [w for w in self.workers.values() if w.alive]

    async def spawn(self, sandbox_id: str, options: dict[str, Any]) -> WorkerClient:
        worker = FakeWorker(sandbox_id, self.sink)
        worker.start_gate = self.start_gate
        worker.reusable = self.reusable
        self.workers[sandbox_id] = worker
        self.spawned.append(sandbox_id)
        return self.client(worker)

    async def find_worker(self, sandbox_id: str) -> WorkerClient | None:
        worker = self.workers.get(sandbox_id)
        return self.client(worker) if worker is not None and worker.alive else None

    async def kill(self, worker: WorkerClient) -> None:
        fake: FakeWorker = worker.handle.worker
        if fake.alive:
            self.killed.append(fake.sandbox_id)
        fake.kill()

    async def worker_sandbox_ids(self) -> list[str] | None:
        return [w.sandbox_id for w in self.alive()]

    async def cluster_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus, "ash_session_slot": self.slots} if self.slots else {
            "CPU": self.cpus}

    async def available_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus - 0.01 * len(self.alive())}
