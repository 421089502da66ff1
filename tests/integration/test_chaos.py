"""Chaos suite (issue 10): faults injected into a real `ash-ray start`, loopback only.

Each test runs its own server process (its own Ray cluster) and injects faults one after
another: kill -9 of a session worker mid-turn, of the registry, of the whole server (then
a restart on the same data, with an unreadable row written into its database meanwhile),
Postgres restarted under streams, SIGTERM to the server alone and to its process group.
After every fault every acknowledged user message must still be stored and every session
must answer a new turn. The suite counts faults and lost messages and prints them.

Faults on the shared cluster (kill a worker, kill the registry) are also covered one at a
time in test_failures.py; here they run in sequence against one server, with the ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from ash_ray.config import Settings
from ash_ray.store import SqliteStore
from ash_ray.testing.ports import free_port
from tests.integration.conftest import MODEL_KEY, wait_for
from tests.integration.server_proc import AshProcess
from tests.integration.sse import frames, new_session, send
from tests.pg import TempPostgres

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600)]

DRAIN_TIMEOUT_S = 15.0


@dataclass
class Tally:
    faults: list[str] = field(default_factory=list)
    acked: int = 0
    lost: int = 0


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    t = Tally()
    yield t
    line = (
        f"\nchaos suite: {len(t.faults)} faults injected ({', '.join(t.faults)}); "
        f"{t.acked} acknowledged messages checked, {t.lost} lost"
    )
    # Past output capture (as capsys.disabled() does), so that every run shows it.
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        print(line)
        return
    with capman.global_and_fixture_disabled():
        print(line)


def _prompt(content: str) -> Any:
    """The prompt of a stored user message (an Agent SDK user message, as Ash stores it)."""
    message = json.loads(content)
    return message.get("message", {}).get("content") if isinstance(message, dict) else message


@dataclass
class Ledger:
    """Acknowledged user messages per session: the turn started, so the message is stored."""

    tally: Tally
    sent: dict[str, list[str]] = field(default_factory=dict)

    def ack(self, sid: str, content: str) -> None:
        self.sent.setdefault(sid, []).append(content)
        self.tally.acked += 1

    def send(self, http: httpx.Client, sid: str, content: str) -> list[Any]:
        got = send(http, sid, content)
        self.ack(sid, content)
        assert got[-1][1] == "done", got[-3:]
        return got

    def check(self, http: httpx.Client, after: str) -> None:
        """No acknowledged message lost, and every session takes a new turn."""
        lost = []
        for sid, contents in self.sent.items():
            r = http.get(f"/api/sessions/{sid}/messages")
            assert r.status_code == 200, r.text
            stored = [_prompt(m["content"]) for m in r.json()["messages"] if m["role"] == "user"]
            lost += [(sid, c) for c in contents if c not in stored]
        self.tally.lost += len(lost)
        assert not lost, f"after {after}: acknowledged messages lost: {lost}"
        for sid in list(self.sent):
            got = self.send(http, sid, f"still there after {after}?")
            assert any(f[1] == "turn_complete" for f in got), (after, sid, got[-3:])


def _server(tmp_path: Path, fake_model: Any, **env: str) -> AshProcess:
    return AshProcess(
        tmp_path / "data",
        free_port(run=2),
        {
            "ANTHROPIC_BASE_URL": fake_model.url,
            "ANTHROPIC_API_KEY": MODEL_KEY,
            "ASH_WARM_POOL_SIZE": "0",
            "ASH_NAMESPACE": f"ash-chaos-{uuid.uuid4().hex[:8]}",
            "ASH_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
            **env,
        },
    )


def _tree(proc: AshProcess) -> list[psutil.Process]:
    assert proc.proc is not None
    root = psutil.Process(proc.proc.pid)
    return [root, *root.children(recursive=True)]


def _ray_process(proc: AshProcess, title: str) -> psutil.Process:
    for p in _tree(proc):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if cmd and cmd[0].startswith(f"ray::{title}"):
            return p
    raise AssertionError(f"no ray::{title} process under the server")


def _worker_running(proc: AshProcess, marker: str) -> psutil.Process | None:
    """The session worker whose tool command carries ``marker`` (an ancestor of it)."""
    for p in _tree(proc):
        try:
            if not any(marker in part for part in p.cmdline()):
                continue
            for parent in p.parents():
                if parent.cmdline()[:1] and parent.cmdline()[0].startswith("ray::SessionWorker"):
                    return parent
        except psutil.Error:
            continue
    return None


def _setup(http: httpx.Client, agent_dir: Path, ledger: Ledger, n: int) -> list[str]:
    assert http.post("/api/agents", json={"name": "a", "path": str(agent_dir)}).status_code == 201
    sids = [new_session(http, "a") for _ in range(n)]
    for i, sid in enumerate(sids):
        ledger.send(http, sid, f"first message of session {i}")
    return sids


def _kill_worker_mid_turn(proc: AshProcess, http: httpx.Client, sid: str, ledger: Ledger) -> None:
    marker = f"chaos-{uuid.uuid4().hex}"
    command = f"TOOL Bash {json.dumps({'command': f'sleep 30 # {marker}'})}"
    with http.stream("POST", f"/api/sessions/{sid}/messages", json={"content": command}) as r:
        assert r.status_code == 200
        ledger.ack(sid, command)
        worker = wait_for(lambda: _worker_running(proc, marker), what="the tool to run")
        worker.kill()
        killed_at = time.monotonic()
        got = list(frames(r.iter_lines()))
    ended_s = time.monotonic() - killed_at
    assert ended_s < 15, (ended_s, [f[1] for f in got])
    # The turn continues on a new worker (ASH_TURN_RECOVERY=continue): the lost tool gets
    # an error result, the model answers it, and the stream ends as a turn does.
    assert got[-1][1] == "done" and not any(f[1] == "error" for f in got), got[-3:]
    assert any(f[1] == "tool_result" and "was lost" in f[2]["content"] for f in got), got
    ledger.tally.faults.append("kill -9 worker mid-turn")


def _kill_registry(proc: AshProcess, http: httpx.Client, ledger: Ledger) -> None:
    registry = _ray_process(proc, "Registry")
    registry.kill()
    registry.wait(30)
    ledger.tally.faults.append("kill -9 registry")

    def healthy() -> bool:
        try:
            return http.get("/health").json().get("status") == "ok"
        except (httpx.HTTPError, ValueError):
            return False

    wait_for(healthy, timeout_s=90, interval_s=0.5, what="the registry to come back")
    wait_for(lambda: _ray_process(proc, "Registry").pid != registry.pid, what="a new registry")


def _restart_postgres_under_streams(
    http: httpx.Client, pg: TempPostgres, sids: list[str], ledger: Ledger, fake_model: Any
) -> None:
    # Each reply is held mid-stream until the database has restarted under it.
    holds = [
        fake_model.hold(f"through a database restart {i} ", at="token:3") for i in range(len(sids))
    ]
    try:
        streams, responses = [], []
        for i, sid in enumerate(sids):
            body = {"content": f"through a database restart {i} " * 4,
                    "includePartialMessages": True}  # fmt: skip
            streams.append(http.stream("POST", f"/api/sessions/{sid}/messages", json=body))
            responses.append(streams[-1].__enter__())
            assert responses[-1].status_code == 200
            ledger.ack(sid, body["content"])
        for hold in holds:
            hold.wait_held(60)
        pg.restart()
        ledger.tally.faults.append("postgres restart under streams")
        for hold in holds:
            hold.release()
        results = [list(frames(r.iter_lines())) for r in responses]
        for s in streams:
            s.__exit__(None, None, None)
    finally:
        for hold in holds:
            hold.release()
    for got in results:
        assert got[-1][1] == "done" and not any(f[1] == "error" for f in got), got[-3:]


def _kill_server_mid_turn(
    proc: AshProcess, http: httpx.Client, sid: str, ledger: Ledger, fake_model: Any
) -> None:
    content = "interrupted by a crash " * 20
    # The reply is held mid-stream, so the crash lands while the turn is in flight.
    with fake_model.hold("interrupted by a crash", at="token:3") as hold, http.stream(
        "POST", f"/api/sessions/{sid}/messages",
        json={"content": content, "includePartialMessages": True},
    ) as r:
        assert r.status_code == 200
        ledger.ack(sid, content)
        hold.wait_held(60)
        proc.kill()  # SIGKILL the server and every process of its Ray cluster
    ledger.tally.faults.append("kill -9 whole server mid-turn")


BAD_CONFIG = '{"extra_env": {"A": 1}}'  # a value SessionConfig cannot read


def _bad_row_args(created: Any) -> tuple[Any, ...]:
    return (f"bad-{uuid.uuid4()}", "active", created, created, BAD_CONFIG)


BAD_ROW_SQL = (
    "INSERT INTO sessions (id, agent_name, sandbox_id, status, created_at, last_active_at, "
    "parent_session_id, config, usage, num_turns, last_seq) "
    "VALUES ({}, 'a', 'sb-bad', {}, {}, {}, NULL, {}, '{{}}', 0, 0)"
)


def _write_bad_row(data_dir: Path, database_url: str) -> str:
    """An unreadable session row, written behind the server's back (it is down)."""
    if not database_url:
        args = _bad_row_args("2030-01-01T00:00:00.000000+00:00")  # newest: first page
        with sqlite3.connect(Settings(data_dir=data_dir).sqlite_path) as db:
            db.execute(BAD_ROW_SQL.format(*["?"] * 5), args)
        return str(args[0])

    async def insert() -> str:
        from datetime import UTC, datetime

        args = _bad_row_args(datetime(2030, 1, 1, tzinfo=UTC))
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(BAD_ROW_SQL.format("$1", "$2", "$3", "$4", "$5"), *args)
        finally:
            await conn.close()
        return str(args[0])

    return asyncio.run(insert())


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_faults_in_sequence_lose_no_acknowledged_message(
    store: str, tmp_path: Path, agent_dir: Path, fake_model: Any, tally: Tally
) -> None:
    pg = TempPostgres().start() if store == "postgres" else None
    url = pg.url if pg is not None else ""
    proc = _server(tmp_path, fake_model, **({"ASH_DATABASE_URL": url} if url else {}))
    ledger = Ledger(tally)
    try:
        proc.start()
        with httpx.Client(base_url=proc.url, timeout=120) as http:
            sids = _setup(http, agent_dir, ledger, 3)
            _kill_worker_mid_turn(proc, http, sids[0], ledger)
            ledger.check(http, "a worker was killed")
            _kill_registry(proc, http, ledger)
            ledger.check(http, "the registry was killed")
            if pg is not None:
                _restart_postgres_under_streams(http, pg, sids[:2], ledger, fake_model)
                ledger.check(http, "postgres restarted")
            _kill_server_mid_turn(proc, http, sids[1], ledger, fake_model)
        bad = _write_bad_row(proc.data_dir, url)
        proc.start()  # recovery must skip the bad row, not exit
        with httpx.Client(base_url=proc.url, timeout=120) as http:
            # Read before any new turn: how the crash left the interrupted session.
            crashed = http.get(f"/api/sessions/{sids[1]}").json()["session"]["status"]
            events = http.get(f"/api/sessions/{sids[1]}/events").json()["events"]
            listed = http.get("/api/sessions")
            assert listed.status_code == 200, listed.text
            ids = {s["id"] for s in listed.json()["sessions"]}
            assert set(sids) <= ids and bad not in ids
            ledger.check(http, "the whole server was killed")
        # Issue 10 item 5 (helper core's registry change): the session interrupted by the
        # crash comes back paused, with the interrupted turn's error event in its timeline.
        types = [e["type"] for e in events]
        assert (crashed, "error" in types) == ("paused", True), (crashed, types[-6:])
    finally:
        proc.kill()
        if pg is not None:
            pg.stop()


@pytest.mark.parametrize("target", ["alone", "group"])
def test_sigterm_drains_and_exits_within_the_timeout(
    target: str, tmp_path: Path, agent_dir: Path, fake_model: Any, tally: Tally
) -> None:
    """systemd sends SIGTERM to the whole group; a shell's kill, to the server alone."""
    proc = _server(tmp_path, fake_model)
    ledger = Ledger(tally)
    try:
        proc.start()
        with httpx.Client(base_url=proc.url, timeout=120) as http:
            idle, busy = _setup(http, agent_dir, ledger, 2)
            write = {"file_path": "kiwi.txt", "content": "kiwi"}
            ledger.send(http, idle, f"TOOL Write {json.dumps(write)}")
            tree = _tree(proc)
            content = "a turn cut short by shutdown " * 20
            # The reply is held mid-stream, so the signal lands while the turn runs.
            with fake_model.hold("a turn cut short by shutdown", at="token:3") as hold:
                with http.stream(
                    "POST", f"/api/sessions/{busy}/messages",
                    json={"content": content, "includePartialMessages": True},
                ) as r:
                    assert r.status_code == 200
                    ledger.ack(busy, content)
                    hold.wait_held(60)
                    assert proc.proc is not None
                    pid = proc.proc.pid
                    signalled = time.monotonic()
                    if target == "group":
                        os.killpg(pid, signal.SIGTERM)
                    else:
                        os.kill(pid, signal.SIGTERM)
                    code = proc.proc.wait(DRAIN_TIMEOUT_S + 30)
                    took = time.monotonic() - signalled
        tally.faults.append(f"SIGTERM to the {'process group' if target == 'group' else 'server'}")
        log = proc.log.read_text()[-3000:]
        assert code == 0, log
        assert took <= DRAIN_TIMEOUT_S + 1, f"exit took {took:.1f}s\n{log}"
        assert "paused 2 session(s)" in log
        _, alive = psutil.wait_procs(tree, timeout=20)
        assert not alive, f"left running: {[p.pid for p in alive]}"
        proc.proc = None
        asyncio.run(_assert_drained(proc.data_dir, ledger, idle, busy))
        if target == "group":
            proc.start()
            with httpx.Client(base_url=proc.url, timeout=120) as http:
                ledger.check(http, "SIGTERM to the group")
                cat_kiwi = f"TOOL Bash {json.dumps({'command': 'cat kiwi.txt'})}"
                cat = ledger.send(http, idle, cat_kiwi)
                assert "kiwi" in json.dumps([f[2] for f in cat if f[1] == "tool_result"])
    finally:
        proc.kill()


async def _assert_drained(data_dir: Path, ledger: Ledger, idle: str, busy: str) -> None:
    """Read the stopped server's store: both sessions paused, workspaces snapshotted."""
    settings = Settings(data_dir=data_dir)
    async with SqliteStore(settings.sqlite_path, settings.snapshot_dir) as store:
        for sid in (idle, busy):
            rec = await store.get_session(sid)
            assert rec is not None and rec.status == "paused", (sid, rec)
            stored = [m.content for m in await store.list_messages(sid) if m.role == "user"]
            lost = [c for c in ledger.sent[sid] if c not in stored]
            ledger.tally.lost += len(lost)
            assert not lost
        assert await store.get_snapshot(idle) is not None
