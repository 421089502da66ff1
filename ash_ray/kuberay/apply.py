"""Create or patch KubeRay custom resources through the Kubernetes API.

The ``kubernetes`` client's ``CustomObjectsApi`` does the work (group ``ray.io``, version
``v1``): a resource that does not exist yet is created, an existing one is merge-patched,
so ``ash-ray kuberay apply`` can run again after every change of options.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ash_ray.errors import AshError, ConfigError, Unavailable

GROUP = "ray.io"
VERSION = "v1"
PLURALS = {"RayService": "rayservices", "RayCluster": "rayclusters"}


class CustomObjectsApiLike(Protocol):
    """The part of ``kubernetes.client.CustomObjectsApi`` that apply uses."""

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Any: ...

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: Any
    ) -> Any: ...

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any
    ) -> Any: ...


@dataclass(frozen=True)
class Applied:
    """One resource that :func:`apply_manifests` created or patched."""

    kind: str
    name: str
    namespace: str
    action: Literal["created", "patched"]

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name} {self.action} in namespace {self.namespace}"


def load_custom_objects_api(
    *, kubeconfig: str | None = None, context: str | None = None
) -> CustomObjectsApiLike:
    """A ``CustomObjectsApi`` for the cluster of the kubeconfig, or of the pod we run in.

    Raises ConfigError, saying where it looked, when no cluster configuration is found.
    """
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError) as kube_exc:
        if kubeconfig or context:
            raise ConfigError(
                f"cannot use kubeconfig {kubeconfig or '(default)'} "
                f"context {context or '(current)'}: {kube_exc}"
            ) from None
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise ConfigError(
                "no Kubernetes cluster configuration found: no kubeconfig (KUBECONFIG or "
                "~/.kube/config) and not running inside a pod. Point --kubeconfig or "
                "KUBECONFIG at your cluster's kubeconfig, or use `ash-ray kuberay render` "
                f"and `kubectl apply -f`. ({kube_exc})"
            ) from None
    return client.CustomObjectsApi()


def apply_manifests(
    manifests: Iterable[dict[str, Any]],
    *,
    namespace: str,
    api: CustomObjectsApiLike | None = None,
) -> list[Applied]:
    """Create each RayService/RayCluster in ``namespace``, or patch it when it exists.

    ``api`` defaults to :func:`load_custom_objects_api`; tests pass a stand-in.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    manifests = list(manifests)
    for manifest in manifests:
        _check(manifest)
    api = api or load_custom_objects_api()
    applied = []
    for manifest in manifests:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        plural = PLURALS[kind]
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
        where = f"{kind} {namespace}/{name}"
        try:
            try:
                api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
                applied.append(Applied(kind, name, namespace, "created"))
            else:
                api.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body)
                applied.append(Applied(kind, name, namespace, "patched"))
        except ApiException as exc:
            raise _api_error(exc, where) from None
        except HTTPError as exc:  # connection refused, DNS, TLS: the API server is unreachable
            raise Unavailable(f"cannot reach the Kubernetes API for {where}: {exc}") from None
    return applied


def _check(manifest: dict[str, Any]) -> None:
    api_version = manifest.get("apiVersion")
    kind = manifest.get("kind")
    if api_version != f"{GROUP}/{VERSION}" or kind not in PLURALS:
        raise ConfigError(
            f"can only apply {GROUP}/{VERSION} {' or '.join(PLURALS)}, got {api_version} {kind}"
        )
    if not manifest.get("metadata", {}).get("name"):
        raise ConfigError(f"{kind} has no metadata.name")


def _api_error(exc: Any, where: str) -> AshError:
    detail = exc.reason
    try:
        detail = json.loads(exc.body).get("message") or detail
    except (TypeError, ValueError, AttributeError):
        pass
    hint = ""
    if exc.status == 404:
        hint = (
            " (is the KubeRay operator installed, with its ray.io/v1 CRDs, and does the"
            " namespace exist?)"
        )
    elif exc.status in (401, 403):
        hint = " (check your kubeconfig's user and its RBAC rights on ray.io resources)"
    message = f"Kubernetes API refused {where}: {exc.status} {detail}{hint}"
    if exc.status is not None and exc.status >= 500:
        return Unavailable(message, status=exc.status)
    return AshError(message, status=exc.status)
