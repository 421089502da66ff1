"""The floor of ash-ray's design under load (issue 14): the parts a turn must cross, and
nothing of ash-ray.

One FastAPI ingress replica of Ray Serve, set up as ash-ray's (direct ingress: the
replica answers HTTP itself; up to 1000 requests at once; handlers on its own loop; at
nice 0 where the OS allows it); one
Ray actor a session (at nice 19 while it starts or waits in the pool, 10 while it serves
a session, below the ingress, as ash-ray's session workers),
holding an `anthropic` client and the conversation; each message streamed back over a
Ray streaming generator in two items, the fewest a stream can have (``session_start``
before the model call; the reply's ``text_delta`` frames with ``done``). Actors are pooled
as ash-ray's workers are: WARM_POOL started ahead, a stopped session's actor serves the
next create (its conversation cleared), so a run of many short sessions does not measure
process starts the design avoids. No registry, no
store (nothing is saved: a crash loses it all), no sandbox, no agent loop, no auth.
`load.py --ray-floor` runs the same load against it in the same run, so the table shows
what the design itself costs on this machine beside what ash-ray costs.

A session's requests carry the fixed part of ash-ray's own (its model, system prompt and
tool definitions: REQUEST, a JSON file) when given, so both send the model the same bytes.

With SAVES (``saves``), the floor also makes the two saves a turn that ash-ray's contract
needs (a session resumes with its conversation after a crash, nothing acknowledged is
lost), in ash-ray's order, and nothing more: the model request goes out, the prompt is
committed by one store actor before ``session_start`` (the acknowledgment), the reply
before ``done``. The store actor
commits each call to SQLite (WAL, ``synchronous=FULL``, ash-ray's default) in a thread.
ash-ray's registry does this and more (the session index, the event log, usage, the
turn queue), with the same two calls a turn.

    python benchmarks/_ray_floor_app.py PORT PROXY_PORT MODEL_URL API_KEY [REQUEST [SAVES]]
"""


import asyncio
import json
import os
import signal
import sqlite3
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

import ray
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from ray import serve

app = FastAPI()
# A model request's fixed part when no REQUEST is given.
MINIMAL: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 1024}


def renice(value: int) -> None:
    """Every thread of this process to ``value`` (as ash-ray's session workers)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), value)
        except OSError:
            pass  # a thread that ended, or no right to raise it


def frame(type_: str, data: dict[str, Any]) -> bytes:
    return f"event: {type_}\ndata: {json.dumps(data)}\n\n".encode()


@ray.remote(num_cpus=0)
class Store:
    """The saves, and nothing else of a registry: each call commits before it returns."""

    def __init__(self, path: str) -> None:
        renice(0)  # ahead of the sessions, as ash-ray's registry
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("CREATE TABLE rows (session TEXT, seq INTEGER, body TEXT, "
                        "PRIMARY KEY (session, seq))")
        self.lock = asyncio.Lock()

    async def save(self, session: str, rows: list[tuple[int, str]]) -> None:
        async with self.lock:
            await asyncio.to_thread(self._commit, [(session, *row) for row in rows])

    def _commit(self, rows: list[tuple[str, int, str]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?)", rows)
        self.db.execute("COMMIT")


@ray.remote(num_cpus=0.01)
class Session:
    """A session: the conversation and a model client, in an actor of its own."""

    def __init__(
        self, model_url: str, api_key: str, request: dict[str, Any], store: Any = None
    ) -> None:
        import anthropic

        self.store = store
        self.request = request
        renice(19)  # starting, then pooled: below the sessions being served
        self.serving = False
        self.client = anthropic.AsyncAnthropic(api_key=api_key, base_url=model_url,
                                               max_retries=0)
        self.conversation: list[dict[str, Any]] = []

    async def turn(self, content: str, sid: str = "") -> AsyncIterator[bytes]:
        """Two items a turn, the fewest a stream can have: ``session_start``, then the
        reply's frames and ``done`` together. With a store, as ash-ray: the model request
        goes out first, ``session_start`` once the prompt is saved (an acknowledged
        message is never lost), ``done`` once the reply is."""
        if not self.serving:
            self.serving = True
            renice(10)
        self.conversation.append({"role": "user", "content": content})
        if self.store is None:
            yield frame("session_start", {})
        frames = []
        async with self.client.messages.stream(
            **self.request, messages=self.conversation
        ) as stream:
            if self.store is not None:
                await self._save(sid)
                yield frame("session_start", {})
            async for text in stream.text_stream:
                frames.append(frame("text_delta", {"text": text}))
            final = await stream.get_final_message()
        self.conversation.append(
            {"role": "assistant", "content": [b.model_dump() for b in final.content]}
        )
        if self.store is not None:
            await self._save(sid)
        yield b"".join([*frames, frame("done", {})])

    def _save(self, sid: str) -> Any:
        """The conversation's last message to the store (None: no store)."""
        if self.store is None:
            return None
        n = len(self.conversation)
        return self.store.save.remote(sid, [(n, json.dumps(self.conversation[-1]))])

    def messages(self) -> list[dict[str, Any]]:
        return self.conversation

    def reset(self) -> None:
        self.conversation = []
        self.serving = False
        renice(19)


# Pre-started actors, as ash-ray's default ASH_WARM_POOL_SIZE.
WARM_POOL = 2


@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=1000,  # Serve's default (5) would queue 45 of 50 streams
    ray_actor_options={
        "num_cpus": 0,
        "runtime_env": {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}},
    },
)
@serve.ingress(app)
class Ingress:
    def __init__(
        self, model_url: str, api_key: str, request: dict[str, Any], store_path: str
    ) -> None:
        renice(0)  # ahead of the sessions, as ash-ray's ingress
        self.model_url, self.api_key, self.request = model_url, api_key, request
        self.store = Store.remote(store_path) if store_path else None  # type: ignore[attr-defined]
        self.sessions: dict[str, Any] = {}
        self.idle = [self._start() for _ in range(WARM_POOL)]

    def _start(self) -> Any:
        return Session.remote(  # type: ignore[attr-defined]
            self.model_url, self.api_key, self.request, self.store
        )

    def _session(self, sid: str) -> Any:
        if sid not in self.sessions:
            raise HTTPException(404, f"no session {sid}")
        return self.sessions[sid]

    @app.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/agents", status_code=201)
    async def agent(self, request: Request) -> dict[str, Any]:
        return {"agent": await request.json()}

    @app.post("/api/sessions", status_code=201)
    async def create(self) -> dict[str, Any]:
        sid = uuid.uuid4().hex
        self.sessions[sid] = self.idle.pop() if self.idle else self._start()
        if len(self.idle) < WARM_POOL:
            self.idle.append(self._start())
        return {"session": {"id": sid}}

    @app.post("/api/sessions/{sid}/messages")
    async def message(self, sid: str, request: Request) -> StreamingResponse:
        content = (await request.json())["content"]
        batches = self._session(sid).turn.options(num_returns="streaming").remote(content, sid)

        async def frames() -> AsyncIterator[bytes]:
            async for ref in batches:
                yield await ref

        return StreamingResponse(frames(), media_type="text/event-stream")

    @app.get("/api/sessions/{sid}/messages")
    async def stored(self, sid: str) -> dict[str, Any]:
        conversation = await self._session(sid).messages.remote()
        return {"messages": [{"role": m["role"], "content": json.dumps(m["content"])}
                             for m in conversation]}

    @app.post("/api/sessions/{sid}/stop")
    async def stop(self, sid: str) -> dict[str, Any]:
        actor = self._session(sid)
        del self.sessions[sid]
        await actor.reset.remote()
        self.idle.append(actor)  # serves the next create, as ash-ray's released workers
        return {"session": {"id": sid, "status": "stopped"}}


def main() -> None:
    port, proxy_port, model_url, api_key = (
        int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    )
    request = MINIMAL
    if len(sys.argv) > 5:
        with open(sys.argv[5]) as f:
            request = json.load(f)
    saves = len(sys.argv) > 6 and sys.argv[6] == "saves"
    store_path = os.path.join(tempfile.mkdtemp(), "floor.db") if saves else ""
    # Serve as ash-ray runs it: the replica answers PORT itself (direct ingress), the
    # proxy listens beside it.
    os.environ.update({
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1),
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
    })
    ray.init(address="local", include_dashboard=False, num_cpus=os.cpu_count(),
             log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": proxy_port})
    serve.run(Ingress.bind(model_url, api_key, request, store_path), name="floor",
              route_prefix="/")

    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    asyncio.run(wait())
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
