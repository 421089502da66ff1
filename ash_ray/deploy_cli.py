"""``ash-ray deploy DIR``: upload an agent folder to a server, local or remote.

The folder's files travel in the request (base64), so the server never needs to see
the folder: it stores them as a new agent version. Like Ash's CLI, ``.env`` then
``.env.local`` then ``-e K=V`` (each wins over the one before) become the agent's env;
those two files are not uploaded. Dependency folders and caches (``node_modules``,
``.git``, ``__pycache__``, ``.venv``, ...) are skipped (:mod:`ash_ray.agent.bundle`).
An agent bigger than one request is sent in batches: the first replaces the agent's
files, the rest are added to them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from ash_ray.agent import bundle

ENV_FILES = (".env", ".env.local")
# Encoded bytes per request: under the server's default body limit (10 MiB).
BATCH_BYTES = 8 * 1024 * 1024
CHUNK = 64 * 1024


def agent_env(folder: Path, pairs: list[str]) -> dict[str, str]:
    """``.env`` < ``.env.local`` < ``-e K=V``, as Ash's CLI merges them."""
    env: dict[str, str] = {}
    for name in ENV_FILES:
        if (folder / name).is_file():
            env.update({k: v for k, v in dotenv_values(folder / name).items() if v is not None})
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: -e wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def collect(folder: Path) -> list[dict[str, str]]:
    """The folder's files as ``{path, content}`` (base64), skip lists applied."""
    if not (folder / "CLAUDE.md").is_file():
        raise SystemExit(f"error: {folder} has no CLAUDE.md; an agent folder needs one")
    return [
        {"path": rel, "content": base64.b64encode(full.read_bytes()).decode()}
        for rel, full in bundle.walk(folder, exclude=ENV_FILES)
    ]


def batches(files: list[dict[str, str]], limit: int = BATCH_BYTES) -> list[list[dict[str, str]]]:
    out: list[list[dict[str, str]]] = [[]]
    size = 0
    for item in files:
        n = len(item["content"]) + len(item["path"]) + 32
        if out[-1] and size + n > limit:
            out.append([])
            size = 0
        out[-1].append(item)
        size += n
    return out


def _chunks(body: bytes, progress: Progress, task: Any) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK):
        piece = body[start : start + CHUNK]
        yield piece
        progress.advance(task, len(piece))


def deploy(client: Any, folder: Path, name: str, env_pairs: list[str]) -> dict[str, Any]:
    """Upload ``folder`` as agent ``name``; the agent JSON of the last version."""
    env = agent_env(folder, env_pairs)
    parts = batches(collect(folder))
    bodies = [
        json.dumps({"name": name, "files": parts[0], "env": env, "replaceFiles": True}).encode()
    ] + [json.dumps({"files": part}).encode() for part in parts[1:]]
    console = Console(stderr=True)
    columns = (TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(name, total=sum(len(b) for b in bodies))
        headers = {"Content-Type": "application/json"}
        result = client.call(
            "POST", "/api/agents", content=_chunks(bodies[0], progress, task), headers=headers
        )
        for body in bodies[1:]:
            client.call(
                "POST", f"/api/agents/{name}/files", content=_chunks(body, progress, task),
                headers=headers,
            )  # fmt: skip
    if len(bodies) > 1:
        result = client.call("GET", f"/api/agents/{name}")
    agent: dict[str, Any] = result["agent"]
    return agent
