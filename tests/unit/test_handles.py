"""The typed clients: one unwrap rule, one re-attach of a stale worker, names mypy checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import ray

from ash_ray.errors import SessionNotFound, WorkerReleasing
from ash_ray.handles import Call, RegistryApi, RegistryClient, WorkerApi, WorkerClient, unwrap
from ash_ray.registry.actor import Registry
from ash_ray.session.actor import SessionWorker

ROOT = Path(__file__).resolve().parents[2]


def _task_error(cause: BaseException) -> ray.exceptions.RayTaskError:
    return ray.exceptions.RayTaskError("f", "Traceback: ...", cause)


def test_unwrap_finds_our_error_however_deeply_wrapped() -> None:
    ours = SessionNotFound("session x does not exist", session_id="x")
    assert unwrap(_task_error(_task_error(ours))) is ours
    foreign = _task_error(ZeroDivisionError("boom"))
    assert unwrap(foreign) is foreign  # not ours: Ray's error, as it was
    plain = ValueError("x")
    assert unwrap(plain) is plain


class Refresh:
    def __init__(self) -> None:
        self.count = 0

    async def again(self) -> None:
        self.count += 1

    def again_sync(self) -> None:
        self.count += 1


async def test_a_stale_worker_is_reattached_and_the_call_sent_once_more() -> None:
    sent: list[int] = []

    def submit() -> Any:
        sent.append(1)
        if len(sent) == 1:
            raise ray.exceptions.RayActorError()

        async def answer() -> str:
            return "ok"

        return answer()

    refresh = Refresh()
    assert await Call(submit, refresh) == "ok"
    assert refresh.count == 1 and len(sent) == 2


async def test_a_worker_releasing_its_session_is_left_for_a_new_one() -> None:
    sent: list[int] = []

    async def releasing() -> str:
        # As ray.get raises an actor's error: an instance of both RayTaskError and ours.
        raise _task_error(WorkerReleasing("being released", session_id="x")).as_instanceof_cause()

    async def answer() -> str:
        return "ok"

    def submit() -> Any:
        sent.append(1)
        return releasing() if len(sent) == 1 else answer()

    refresh = Refresh()
    assert await Call(submit, refresh) == "ok"
    assert refresh.count == 1 and len(sent) == 2


async def test_a_worker_lost_twice_fails_and_errors_come_back_as_ours() -> None:
    def dead() -> Any:
        raise ray.exceptions.RayActorError()

    with pytest.raises(ray.exceptions.RayActorError):
        await Call(dead, Refresh())

    async def raising() -> Any:
        raise _task_error(SessionNotFound("gone", session_id="y"))

    with pytest.raises(SessionNotFound) as info:
        await Call(raising)
    assert type(info.value) is SessionNotFound


def test_the_clients_name_only_methods_the_actors_have() -> None:
    for api, actor in ((RegistryApi, Registry), (WorkerApi, SessionWorker)):
        declared = {n for n in vars(api) if not n.startswith("_")}
        assert declared <= set(dir(actor)), declared - set(dir(actor))
    called = {n for n in vars(RegistryClient) if not n.startswith("_")}
    assert called - {"handle", "session", "session_sync"} <= set(vars(RegistryApi))
    called = {n for n in vars(WorkerClient) if not n.startswith("_")}
    assert called - {"start_turn", "scoped"} <= set(vars(WorkerApi))


@pytest.mark.slow
def test_mypy_catches_a_misspelled_method(tmp_path: Path) -> None:
    snippet = tmp_path / "typo.py"
    snippet.write_text(
        "from ash_ray.handles import RegistryClient\n"
        "async def f(r: RegistryClient) -> None:\n"
        "    await r.get_sesion('x')\n"
        "    s = await r.get_session('x')\n"
        "    s.statuss\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--follow-imports=silent",
         str(snippet)],
        cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert '"RegistryClient" has no attribute "get_sesion"' in out.stdout, out.stdout
    assert '"SessionRecord" has no attribute "statuss"' in out.stdout, out.stdout
