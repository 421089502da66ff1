"""A separate Ray driver, started with a clean environment, joins a token-auth `ash-ray start`.

Ray 2.60 turns token authentication on for a new local cluster. The server here gets its
own fresh token (RAY_AUTH_TOKEN, so no ~/.ray/auth_token is written) and the driver's
HOME holds no token at all: the only way in is what `ash-ray start` writes to
<data_dir>/ray-cluster.json.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ash_ray import cluster_file
from ash_ray.testing.ports import free_port
from tests.helpers import wait_for
from tests.integration.conftest import MODEL_KEY
from tests.integration.server_proc import AshProcess
from tests.integration.sse import new_session

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

DRIVER = """
import json, sys
import ray
from ash_ray.pipeline import connect

ash = connect() if len(sys.argv) < 2 else connect(address=sys.argv[1])
with ash.session("a") as session:
    out = session.run("hello from a driver")
print(json.dumps({"result": out["result"], "gcs": ray.get_runtime_context().gcs_address}))
"""


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture()
def proc(home: Path, fake_model) -> Iterator[AshProcess]:  # type: ignore[no-untyped-def]
    env = {
        "HOME": str(home),
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "ANTHROPIC_BASE_URL": fake_model.url,
        "ANTHROPIC_API_KEY": MODEL_KEY,
        "ASH_WARM_POOL_SIZE": "0",
    }
    # The default data dir of a process whose HOME is `home`: found with no ASH_DATA_DIR.
    p = AshProcess(home / ".ash-ray", free_port(run=2), env)
    yield p
    p.kill()


def clean_run(home: Path, *argv: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command as a fresh shell would: PATH, HOME and PYTHONPATH only."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout_s, cwd=home
    )


def test_clean_driver_joins_with_the_cluster_file(
    proc: AshProcess, home: Path, agent_dir: Path
) -> None:
    proc.start()
    path = cluster_file.path_for(proc.data_dir)
    wait_for(path.exists, 60, what=str(path))  # written just after /health answers
    banner = proc.log.read_text()
    info = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the token
    assert info["auth_mode"] == "token" and info["token"] == proc.env["RAY_AUTH_TOKEN"]
    printed = re.search(r"^  ray:\s+(\S+)", banner, re.M)
    assert printed is not None, banner
    address = printed.group(1)
    assert info["address"] == address
    assert not (home / ".ray" / "auth_token").exists()

    with httpx.Client(base_url=proc.url, timeout=60) as http:
        r = http.post("/api/agents", json={"name": "a", "path": str(agent_dir)})
        assert r.status_code == 201, r.text
        live_sid = new_session(http, "a")

    for args in ((), (address,)):
        run = clean_run(home, sys.executable, "-c", DRIVER, *args)
        assert run.returncode == 0, run.stderr[-4000:]
        answer = json.loads(run.stdout.strip().splitlines()[-1])
        assert answer == {"result": "echo: hello from a driver", "gcs": address}

    ps = clean_run(home, sys.executable, "-m", "ash_ray", "ps", "--address", address, "--json")
    assert ps.returncode == 0, ps.stderr[-4000:]
    assert live_sid in [row["sessionId"] for row in json.loads(ps.stdout)]

    assert proc.terminate() == 0
    assert not path.exists()  # a stopped cluster leaves no address behind
