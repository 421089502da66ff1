"""`ash-ray kuberay apply`: the real `kubernetes` client against a stand-in Kubernetes API
on 127.0.0.1 (no cluster exists here), so the URLs, verbs and patch type are checked as
a real API server would see them."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from ash_ray.errors import AshError, ConfigError, Unavailable
from ash_ray.kuberay import (
    Applied,
    KubeRayOptions,
    add_kuberay_parser,
    apply_manifests,
    load_custom_objects_api,
    render_manifests,
    render_yaml,
)

BASE = "/apis/ray.io/v1/namespaces"


class FakeKubeAPI(ThreadingHTTPServer):
    """Stores custom objects by URL path; ``refuse`` forces an answer for (verb, path)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []  # verb, path, content type
        self.refuse: dict[tuple[str, str], tuple[int, str]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeKubeAPI

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, message: str) -> None:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "code": code,
        }
        self._answer(code, body)

    def _handle(self, verb: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((verb, self.path, self.headers.get("Content-Type", "")))
        if (verb, self.path) in self.server.refuse:
            self._status(*self.server.refuse[(verb, self.path)])
        elif verb == "GET":
            if self.path in self.server.objects:
                self._answer(200, self.server.objects[self.path])
            else:
                self._status(404, "not found")
        elif verb == "POST":
            path = f"{self.path}/{body['metadata']['name']}"
            self.server.objects[path] = body
            self._answer(201, body)
        elif verb == "PATCH":
            self.server.objects[self.path] = {**self.server.objects[self.path], **body}
            self._answer(200, self.server.objects[self.path])

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")


@pytest.fixture
def kube() -> Iterator[FakeKubeAPI]:
    server = FakeKubeAPI()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def kubeconfig(tmp_path: Path, kube: FakeKubeAPI) -> Path:
    return _kubeconfig(tmp_path / "kubeconfig", kube.url)


def test_creates_then_patches(kube: FakeKubeAPI, kubeconfig: Path) -> None:
    api = load_custom_objects_api(kubeconfig=str(kubeconfig))
    manifests = render_manifests()
    first = apply_manifests(manifests, namespace="agents", api=api)
    assert first == [Applied("RayService", "ash", "agents", "created")]
    assert str(first[0]) == "rayservice/ash created in namespace agents"
    stored = kube.objects[f"{BASE}/agents/rayservices/ash"]
    assert stored["metadata"]["namespace"] == "agents"
    assert stored["spec"] == manifests[0]["spec"]

    second = apply_manifests(manifests, namespace="agents", api=api)
    assert second == [Applied("RayService", "ash", "agents", "patched")]
    verbs = [(verb, path) for verb, path, _ in kube.requests]
    assert verbs == [
        ("GET", f"{BASE}/agents/rayservices/ash"),
        ("POST", f"{BASE}/agents/rayservices"),
        ("GET", f"{BASE}/agents/rayservices/ash"),
        ("PATCH", f"{BASE}/agents/rayservices/ash"),
    ]
    # A merge patch replaces lists (worker groups, env) as a whole: the result is the
    # manifest as rendered, never a mix of old and new entries.
    assert kube.requests[-1][2] == "application/merge-patch+json"


def test_rayclusters_use_their_own_plural(kube: FakeKubeAPI, kubeconfig: Path) -> None:
    api = load_custom_objects_api(kubeconfig=str(kubeconfig))
    apply_manifests(render_manifests(KubeRayOptions(kind="raycluster")), namespace="ns", api=api)
    assert f"{BASE}/ns/rayclusters/ash" in kube.objects


def test_refusals_say_what_to_check(kube: FakeKubeAPI, kubeconfig: Path) -> None:
    api = load_custom_objects_api(kubeconfig=str(kubeconfig))
    kube.refuse[("GET", f"{BASE}/ns/rayservices/ash")] = (403, "rayservices is forbidden")
    with pytest.raises(AshError) as forbidden:
        apply_manifests(render_manifests(), namespace="ns", api=api)
    assert "403 rayservices is forbidden" in str(forbidden.value)
    assert "RBAC" in str(forbidden.value)

    kube.refuse[("GET", f"{BASE}/ns/rayservices/ash")] = (404, "not found")
    kube.refuse[("POST", f"{BASE}/ns/rayservices")] = (404, "the server could not find it")
    with pytest.raises(AshError) as missing:
        apply_manifests(render_manifests(), namespace="ns", api=api)
    assert "KubeRay operator installed" in str(missing.value)

    kube.refuse[("GET", f"{BASE}/ns/rayservices/ash")] = (503, "etcd is down")
    with pytest.raises(Unavailable):
        apply_manifests(render_manifests(), namespace="ns", api=api)


def test_unreachable_api_server_is_unavailable(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    closed_port = server.server_address[1]
    server.server_close()  # nothing listens there any more
    config = _kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{closed_port}")
    api = load_custom_objects_api(kubeconfig=str(config))
    with pytest.raises(Unavailable, match="cannot reach the Kubernetes API"):
        apply_manifests(render_manifests(), namespace="ns", api=api)


def test_only_kuberay_resources_are_applied(kube: FakeKubeAPI, kubeconfig: Path) -> None:
    api = load_custom_objects_api(kubeconfig=str(kubeconfig))
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}
    with pytest.raises(ConfigError, match=r"can only apply ray\.io/v1"):
        apply_manifests([*render_manifests(), service], namespace="ns", api=api)
    assert kube.requests == [], "nothing is sent when one manifest is wrong"


def test_no_cluster_configuration_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(ConfigError, match="no Kubernetes cluster configuration found"):
        load_custom_objects_api()
    with pytest.raises(ConfigError, match="cannot use kubeconfig"):
        load_custom_objects_api(kubeconfig=str(tmp_path / "missing"))


# -- the command line ------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ash-ray")
    add_kuberay_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_apply_renders_and_applies(
    kube: FakeKubeAPI, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "kuberay",
        "apply",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        "agents",
        "--slots-per-worker",
        "4",
    ]
    assert _cli(argv) == 0
    assert capsys.readouterr().out == "rayservice/ash created in namespace agents\n"
    stored = kube.objects[f"{BASE}/agents/rayservices/ash"]
    assert stored == render_manifests(KubeRayOptions(namespace="agents", slots_per_worker=4))[0]
    assert _cli(argv) == 0
    assert "patched" in capsys.readouterr().out


def test_cli_apply_a_file(
    kube: FakeKubeAPI, kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "raycluster.yaml"
    manifest.write_text(render_yaml(KubeRayOptions(kind="raycluster", name="ash-ft")))
    assert _cli(["kuberay", "apply", "--kubeconfig", str(kubeconfig), "-f", str(manifest)]) == 0
    assert "raycluster/ash-ft created in namespace default" in capsys.readouterr().out
    assert f"{BASE}/default/rayclusters/ash-ft" in kube.objects


def test_cli_apply_reports_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert _cli(["kuberay", "apply"]) == 1
    assert "no Kubernetes cluster configuration found" in capsys.readouterr().err
