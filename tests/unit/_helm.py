"""Render charts/ash without a helm binary (helm-python-sdk embeds Helm) and validate
the objects with kubernetes-validate, for the chart tests."""

from __future__ import annotations

import functools
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "ash"
EXAMPLES_DIR = CHART_DIR / "examples"
#: The oldest Kubernetes the guide supports and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.25", kubernetes_validate.latest_version())
#: Kinds kubernetes-validate has no schema for (CRDs); the tests check them by hand.
CRD_KINDS = {"ServiceMonitor"}


@dataclass(frozen=True)
class Release:
    """What `helm install <name> ./charts/ash` would create, parsed."""

    name: str
    namespace: str
    objects: tuple[dict[str, Any], ...]
    notes: str

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        names = [f"{o['kind']}/{o['metadata']['name']}" for o in self.objects]
        assert len(found) == 1, f"expected one {kind} {name or ''} in {names}"
        return found[0]

    def has(self, kind: str) -> bool:
        return bool(self.all(kind))

    @property
    def statefulset(self) -> dict[str, Any]:
        return self.get("StatefulSet")

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.statefulset["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod_spec["containers"]
        assert len(containers) == 1
        container: dict[str, Any] = containers[0]
        return container

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        """The Ash container's env by name (names must be unique)."""
        names = [e["name"] for e in self.container["env"]]
        assert len(names) == len(set(names)), f"duplicate env: {names}"
        return {e["name"]: e for e in self.container["env"]}


@functools.cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART_DIR)


def chart() -> helm.Chart:
    """The loaded chart (loaded once per test process)."""
    return _chart()


def render(
    values: dict[str, Any] | None = None, *, release: str = "ash", namespace: str = "default"
) -> Release:
    """Render with ``values`` (cached: each distinct input renders once per process)."""
    return _render(json.dumps(values or {}, sort_keys=True), release, namespace)


@functools.cache
def _render(values_json: str, release: str, namespace: str) -> Release:
    manifests = chart().render(
        values=json.loads(values_json), name=release, namespace=namespace, is_install=True
    )
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Release(release, namespace, tuple(objects), notes)


def render_error(values: dict[str, Any], *, release: str = "ash") -> str:
    """The message Helm fails with for ``values``; fails the test if it renders."""
    try:
        chart().render(values=values, name=release, namespace="default", is_install=True)
    except helm.HelmError as exc:
        return str(exc)
    raise AssertionError(f"the chart rendered with {values!r}; expected a refusal")


def load_values_file(path: Path) -> dict[str, Any]:
    return helm.values_from_yaml(path.read_text())


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of values: maps merge key by key, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def render_command(command: str, files: dict[str, dict[str, Any]]) -> Release:
    """Render what ``helm install|upgrade NAME ./charts/ash [-f F] [--set K=V]`` would.

    ``files`` maps the names given to ``-f`` to their values.
    """
    words = shlex.split(command)
    assert words[:2] in (["helm", "install"], ["helm", "upgrade"]), command
    release, chart_ref, *flags = words[2:]
    assert chart_ref == "./charts/ash", command
    from_files: dict[str, Any] = {}
    from_set: dict[str, Any] = {}
    while flags:
        flag, arg, *flags = flags
        if flag in ("-f", "--values"):
            assert arg in files, f"{command}: no values file {arg} in {sorted(files)}"
            from_files = merge(from_files, files[arg])
        elif flag == "--set":
            from_set = merge(from_set, helm.parse_set_string(arg))
        else:
            raise AssertionError(f"{command}: flag {flag} is not understood by the test")
    # Helm applies every -f file first, then every --set.
    return render(merge(from_files, from_set), release=release)


def validation_problems(objects: tuple[dict[str, Any], ...], version: str) -> list[str]:
    """Every object checked by ``kubernetes-validate --strict`` for ``version``."""
    problems = []
    for obj in objects:
        if obj["kind"] not in CRD_KINDS:
            problems.extend(_problems(json.dumps(obj, sort_keys=True), version))
    return problems


@functools.cache
def _problems(obj_json: str, version: str) -> tuple[str, ...]:
    # Cached: the same object (e.g. the headless Service) recurs in many renders.
    obj = json.loads(obj_json)
    where = f"{obj['kind']}/{obj['metadata']['name']} (k8s {version})"
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return (f"{where}: {'.'.join(str(p) for p in exc.path)}: {exc.message}",)
    except kubernetes_validate.SchemaNotFoundError as exc:
        return (f"{where}: {exc.message}",)
    return ()
