"""ash-ray: host Claude agents as production HTTP APIs on Ray."""

__version__ = "0.1.0"

__all__ = ["__version__"]
