"""KubeRay deployment of ash-ray: render and apply the RayService / RayCluster.

``render_manifests(KubeRayOptions(...))`` builds the ``ray.io/v1`` custom resources,
``apply_manifests(manifests, namespace=...)`` creates or patches them in a cluster, and
``add_kuberay_parser`` adds ``ash-ray kuberay render|apply`` to the command line.
"""

from ash_ray.kuberay.apply import (
    Applied,
    CustomObjectsApiLike,
    apply_manifests,
    load_custom_objects_api,
)
from ash_ray.kuberay.cli import add_kuberay_parser
from ash_ray.kuberay.render import KubeRayOptions, render_manifests, render_yaml, serve_config

__all__ = [
    "Applied",
    "CustomObjectsApiLike",
    "KubeRayOptions",
    "add_kuberay_parser",
    "apply_manifests",
    "load_custom_objects_api",
    "render_manifests",
    "render_yaml",
    "serve_config",
]
