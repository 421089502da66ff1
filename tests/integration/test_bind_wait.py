"""A session's first call waits for its worker's bind, whatever the call (issue 13).

The registry answers a create as soon as the session row is committed; the worker copies
the agent's folder meanwhile. A big folder makes that copy outlast the create.
"""

from __future__ import annotations

import httpx
import pytest

from ash_ray.pipeline import connect
from tests.integration.sse import new_session

pytestmark = pytest.mark.ray

FILES = 1500
FILE_BYTES = 16 * 1024


@pytest.fixture(scope="module")
def big_agent(server: str, http_module: httpx.Client, tmp_path_factory: pytest.TempPathFactory
              ) -> str:
    root = tmp_path_factory.mktemp("agents") / "big"
    (root / "data").mkdir(parents=True)
    (root / "CLAUDE.md").write_text("You are a test agent with a large folder.\n")
    blob = b"x" * FILE_BYTES
    for i in range(FILES):
        (root / "data" / f"f{i:05}.bin").write_bytes(blob)
    r = http_module.post("/api/agents", json={"name": "big", "path": str(root)})
    assert r.status_code == 201, r.text
    return "big"


@pytest.fixture(scope="module")
def http_module(server: str) -> httpx.Client:
    from tests.integration.conftest import API_KEY

    return httpx.Client(base_url=server, headers={"Authorization": f"Bearer {API_KEY}"},
                        timeout=60)


def test_stream_as_the_first_call_of_a_new_session(server: str, big_agent: str) -> None:
    with connect().session(big_agent) as session:
        events = list(session.stream("first words"))
    assert events[0][1] == "session_start" and events[-1][1] == "done"
    assert not [e for e in events if e[1] == "error"], events


def test_exec_as_the_first_call_over_http(http_module: httpx.Client, big_agent: str) -> None:
    sid = new_session(http_module, big_agent)
    r = http_module.post(f"/api/sessions/{sid}/exec", json={"command": "ls data | wc -l"})
    assert r.status_code == 200, r.text
    assert r.json()["stdout"].strip() == str(FILES)
    http_module.delete(f"/api/sessions/{sid}")
