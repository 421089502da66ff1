"""Background jobs beside the registry: the durable queue, usage figures (and evals)."""
