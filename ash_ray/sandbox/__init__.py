"""Process isolation and limits for the tools of one session.

Public names: :func:`create_sandbox` builds the one implementation
(:class:`ProcessSandbox`) behind the :class:`Sandbox` protocol; :func:`detect_limit_mode`
reports the limit mode and :func:`describe_isolation` the whole isolation in force
(filesystem, network, limits) for ``/health``.
"""

from ash_ray.sandbox.base import ExecResult, Sandbox, resolve_in_workspace
from ash_ray.sandbox.env import sandbox_env
from ash_ray.sandbox.factory import create_sandbox
from ash_ray.sandbox.isolation import describe_isolation
from ash_ray.sandbox.limits import available_limit_modes, detect_limit_mode
from ash_ray.sandbox.process import ProcessSandbox

__all__ = [
    "ExecResult",
    "ProcessSandbox",
    "Sandbox",
    "available_limit_modes",
    "create_sandbox",
    "describe_isolation",
    "detect_limit_mode",
    "resolve_in_workspace",
    "sandbox_env",
]
