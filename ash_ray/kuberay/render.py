"""KubeRay manifests for ash-ray: a RayService, or a RayCluster with GCS fault tolerance.

Both run the same Ray cluster:

- a head group: GCS, dashboard, the Serve controller and proxy, the ``AshIngress``
  replicas and the registry;
- a ``sessions`` worker group whose ``ray start`` declares the custom resource
  ``ash_session_slot``, so session actors land only there and a node holds no more
  sessions than it has slots; the in-tree autoscaler adds workers when slots run out.

The RayService carries the Serve config in ``serveConfigV2`` and KubeRay deploys it;
a RayService upgrade builds a new cluster, and sessions come back from the database.
The RayCluster variant keeps the cluster's state in an external Redis (GCS fault
tolerance) so a head restart keeps the Serve app; its head deploys the same Serve config
itself once Ray is up. The files in ``deploy/kuberay/`` are :func:`render_yaml` of the
default options (a test keeps them equal).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ash_ray.config import Settings

#: The Serve application builder of ash-ray (``build_app(args) -> Application``).
APP_IMPORT_PATH = "ash_ray.app:build_app"
APP_NAME = "ash"
INGRESS_DEPLOYMENT = "AshIngress"
SESSION_GROUP = "sessions"
SESSION_SLOT_RESOURCE: str = Settings.model_fields["session_slot_resource"].default
DEFAULT_IMAGE = "ghcr.io/ash-ai-org/ash-ray:0.1.0"

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
_DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
_DATA_DIR = "/data"
# Where the RayCluster head writes the Serve config before `serve deploy`.
_SERVE_CONFIG_FILE = "/tmp/ash-serve.yaml"


class KubeRayOptions(BaseModel):
    """What goes into the manifests; every field is also a flag of ``ash-ray kuberay``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["rayservice", "raycluster"] = Field(
        default="rayservice",
        description="rayservice: KubeRay deploys the Serve app (serveConfigV2); raycluster: "
        "a RayCluster with GCS fault tolerance whose head deploys it.",
    )
    name: str = Field(
        default="ash", pattern=_DNS_LABEL, max_length=40, description="Name of the custom resource."
    )
    namespace: str | None = Field(
        default=None,
        pattern=_DNS_LABEL,
        description="metadata.namespace (default: unset, so kubectl -n or apply chooses).",
    )
    image: str = Field(default=DEFAULT_IMAGE, min_length=1, description="ash-ray image (has Ray).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Image pull policy."
    )
    ray_version: str = Field(default="2.60.0", description="Ray version inside the image.")
    secret: str = Field(
        default="ash-secrets",
        pattern=_DNS_LABEL,
        description="Secret holding the database URL and the API keys.",
    )
    database_url_key: str = Field(
        default="ASH_DATABASE_URL",
        min_length=1,
        description="Key of the postgresql:// URL in the Secret.",
    )
    anthropic_api_key_key: str = Field(
        default="ANTHROPIC_API_KEY", description="Key of the Anthropic API key (empty: not set)."
    )
    api_key_key: str = Field(
        default="ASH_API_KEY", description="Key of the Ash API key (empty: no auth)."
    )
    port: int = Field(default=4100, ge=1, le=65535, description="HTTP port of Serve (ASH_PORT).")
    ingress_replicas: int = Field(default=2, ge=1, le=64, description="AshIngress replicas.")
    max_ongoing_requests: int = Field(
        default=1000, ge=1, description="Requests per replica; every open SSE stream holds one."
    )
    graceful_shutdown_timeout_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long a stopping replica may finish its streams.",
    )
    head_cpu: str = Field(default="2", pattern=_QUANTITY, description="CPU of the head pod.")
    head_memory: str = Field(
        default="8Gi", pattern=_QUANTITY, description="Memory of the head pod."
    )
    worker_replicas: int = Field(default=2, ge=0, le=1000, description="Session workers at start.")
    worker_min_replicas: int = Field(
        default=1, ge=0, le=1000, description="Fewest session workers."
    )
    worker_max_replicas: int = Field(default=10, ge=1, le=1000, description="Most session workers.")
    slots_per_worker: int = Field(
        default=8,
        ge=1,
        le=1000,
        description=f"Sessions per worker (the {SESSION_SLOT_RESOURCE} count).",
    )
    worker_cpu: str = Field(
        default="4", pattern=_QUANTITY, description="CPU of each session worker."
    )
    worker_memory: str = Field(
        default="16Gi", pattern=_QUANTITY, description="Memory of each session worker."
    )
    autoscaling: bool = Field(
        default=True,
        description="Ray's in-tree autoscaler adds session workers when slots run out.",
    )
    privileged: bool = Field(
        default=False,
        description="Privileged pods (cgroup v2 sandbox limits); "
        "otherwise ASH_SANDBOX_LIMITS=rlimit.",
    )
    gcs_fault_tolerance: bool | None = Field(
        default=None,
        description="Keep GCS state in Redis (default: on for raycluster, off for rayservice).",
    )
    redis_address: str = Field(
        default="redis:6379",
        min_length=1,
        description="host:port of the Redis for GCS fault tolerance.",
    )
    redis_password_key: str = Field(
        default="REDIS_PASSWORD",
        description="Key of the Redis password in the Secret (empty: none).",
    )

    @model_validator(mode="after")
    def _workers_in_bounds(self) -> KubeRayOptions:
        if not self.worker_min_replicas <= self.worker_replicas <= self.worker_max_replicas:
            raise ValueError(
                "need worker_min_replicas <= worker_replicas <= worker_max_replicas, got "
                f"{self.worker_min_replicas} <= {self.worker_replicas} <= "
                f"{self.worker_max_replicas}"
            )
        return self

    @property
    def uses_gcs_fault_tolerance(self) -> bool:
        if self.gcs_fault_tolerance is None:
            return self.kind == "raycluster"
        return self.gcs_fault_tolerance


def render_manifests(options: KubeRayOptions | None = None) -> list[dict[str, Any]]:
    """The custom resources for ``options``: one RayService or one RayCluster."""
    options = options or KubeRayOptions()
    metadata: dict[str, Any] = {"name": options.name, "labels": _labels(options)}
    if options.namespace:
        metadata["namespace"] = options.namespace
    if options.kind == "rayservice":
        return [
            {
                "apiVersion": "ray.io/v1",
                "kind": "RayService",
                "metadata": metadata,
                "spec": {
                    # A new cluster per upgrade; live sessions resume from the database.
                    "upgradeStrategy": {"type": "NewCluster"},
                    "serveConfigV2": _to_yaml(serve_config(options)),
                    "rayClusterConfig": _cluster_spec(options),
                },
            }
        ]
    return [
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": metadata,
            "spec": _cluster_spec(options),
        }
    ]


def serve_config(options: KubeRayOptions) -> dict[str, Any]:
    """The Serve config (``ServeDeploySchema``) that runs the ash application."""
    return {
        "proxy_location": "EveryNode",
        # No request_timeout_s: it would cut long SSE streams.
        "http_options": {"host": "0.0.0.0", "port": options.port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": APP_IMPORT_PATH,
                "args": {},
                "deployments": [
                    {
                        "name": INGRESS_DEPLOYMENT,
                        "num_replicas": options.ingress_replicas,
                        "max_ongoing_requests": options.max_ongoing_requests,
                        "graceful_shutdown_timeout_s": options.graceful_shutdown_timeout_s,
                    }
                ],
            }
        ],
    }


def render_yaml(options: KubeRayOptions | None = None) -> str:
    """:func:`render_manifests` as a YAML stream, as ``ash-ray kuberay render`` prints it."""
    options = options or KubeRayOptions()
    header = (
        f"# Rendered by `ash-ray kuberay render --kind {options.kind}`.\n"
        "# For other settings render again with flags (--help) rather than editing.\n"
    )
    return header + "---\n".join(_to_yaml(m) for m in render_manifests(options))


# -- pieces -----------------------------------------------------------------------------


def _labels(options: KubeRayOptions) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "ash",
        "app.kubernetes.io/instance": options.name,
        "app.kubernetes.io/managed-by": "ash-ray",
    }


def _cluster_spec(options: KubeRayOptions) -> dict[str, Any]:
    spec: dict[str, Any] = {"rayVersion": options.ray_version}
    if options.autoscaling:
        spec["enableInTreeAutoscaling"] = True
        spec["autoscalerOptions"] = {"upscalingMode": "Default", "idleTimeoutSeconds": 300}
    if options.uses_gcs_fault_tolerance:
        ft: dict[str, Any] = {"redisAddress": options.redis_address}
        if options.redis_password_key:
            ft["redisPassword"] = {"valueFrom": _from_secret(options, options.redis_password_key)}
        spec["gcsFaultToleranceOptions"] = ft
    spec["headGroupSpec"] = {
        "rayStartParams": {"dashboard-host": "0.0.0.0"},
        "template": _pod_template(options, head=True),
    }
    slots = json.dumps({SESSION_SLOT_RESOURCE: options.slots_per_worker})
    spec["workerGroupSpecs"] = [
        {
            "groupName": SESSION_GROUP,
            "replicas": options.worker_replicas,
            "minReplicas": options.worker_min_replicas,
            "maxReplicas": options.worker_max_replicas,
            # KubeRay passes this to `ray start --resources`, quoted for the shell.
            "rayStartParams": {"resources": '"' + slots.replace('"', '\\"') + '"'},
            "template": _pod_template(options, head=False),
        }
    ]
    return spec


def _pod_template(options: KubeRayOptions, *, head: bool) -> dict[str, Any]:
    cpu, memory = (
        (options.head_cpu, options.head_memory)
        if head
        else (options.worker_cpu, options.worker_memory)
    )
    container: dict[str, Any] = {
        "name": "ray-head" if head else "ray-worker",
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
    }
    if head and options.kind == "raycluster":
        # KubeRay runs this before `ray start`; it deploys the app in the background once
        # the dashboard answers. With GCS fault tolerance a restarted head keeps the app.
        container["command"] = [
            f"( (printf '%s' \"$ASH_SERVE_CONFIG\" > {_SERVE_CONFIG_FILE}; "
            f"until serve deploy {_SERVE_CONFIG_FILE}; do sleep 5; done) & )"
        ]
    container["ports"] = _ports(options, head=head)
    container["env"] = _env(options, head=head)
    container["resources"] = {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu, "memory": memory},
    }
    container.update(_probes(head=head))
    container["securityContext"] = _security_context(options)
    container["volumeMounts"] = [
        {"name": "data", "mountPath": _DATA_DIR},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    return {
        "metadata": {"labels": _labels(options)},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"fsGroup": 1000},
            "containers": [container],
            "volumes": [
                # Workspaces of the sessions on this node; snapshots go to the database.
                {"name": "data", "emptyDir": {}},
                # Ray's object store lives in shared memory.
                {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            ],
        },
    }


def _ports(options: KubeRayOptions, *, head: bool) -> list[dict[str, Any]]:
    serve = {"name": "serve", "containerPort": options.port}
    if not head:
        return [serve]
    return [
        {"name": "gcs-server", "containerPort": 6379},
        {"name": "dashboard", "containerPort": 8265},
        {"name": "client", "containerPort": 10001},
        serve,
    ]


def _probes(*, head: bool) -> dict[str, Any]:
    """Explicit probes: KubeRay's defaults need wget, and on a worker they also ask the
    Serve proxy, which a sessions worker without an AshIngress replica does not run. The
    head must not wait for Serve either: KubeRay deploys the app only once the head is
    ready."""
    raylet = {"httpGet": {"path": "/api/local_raylet_healthz", "port": 52365}}
    readiness = {"httpGet": {"path": "/api/gcs_healthz", "port": 8265}} if head else raylet
    return {
        "readinessProbe": {
            **readiness, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 10,
        },
        "livenessProbe": {
            **raylet, "initialDelaySeconds": 30, "periodSeconds": 10, "timeoutSeconds": 2,
            "failureThreshold": 12,
        },
    }


def _security_context(options: KubeRayOptions) -> dict[str, Any]:
    if options.privileged:
        return {"privileged": True, "runAsUser": 0}
    return {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _env(options: KubeRayOptions, *, head: bool) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "ASH_HOST", "value": "0.0.0.0"},
        {"name": "ASH_PORT", "value": str(options.port)},
        {"name": "ASH_DATA_DIR", "value": _DATA_DIR},
        {
            "name": "ASH_MAX_SANDBOXES",
            "value": str(options.slots_per_worker * options.worker_max_replicas),
        },
        {"name": "ASH_DATABASE_URL", "valueFrom": _from_secret(options, options.database_url_key)},
    ]
    for var, key in (
        ("ANTHROPIC_API_KEY", options.anthropic_api_key_key),
        ("ASH_API_KEY", options.api_key_key),
    ):
        if key:
            env.append({"name": var, "valueFrom": _from_secret(options, key)})
    if not options.privileged:
        env.append({"name": "ASH_SANDBOX_LIMITS", "value": "rlimit"})
    if head and options.kind == "raycluster":
        env.append({"name": "ASH_SERVE_CONFIG", "value": _to_yaml(serve_config(options))})
    return env


def _from_secret(options: KubeRayOptions, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": options.secret, "key": key}}


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (the embedded Serve config stays readable), no
    anchors for shared sub-dicts, no folding of long commands."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def _to_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096)
