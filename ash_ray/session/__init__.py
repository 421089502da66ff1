"""A session: its Ray actor (the worker) and the plain services it runs."""

from ash_ray.priority import yield_if_session_worker

# First, before any session module's imports: a session worker starting yields the CPU
# to the control plane for the seconds its imports take (see ash_ray.priority).
yield_if_session_worker()
