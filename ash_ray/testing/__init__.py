"""Test helpers users may reuse: the fake Anthropic API, with hold/release latches.

- :mod:`ash_ray.testing.fake_anthropic`: ``FakeAnthropic`` (and ``python -m`` CLI)

(The throwaway Postgres of our own tests lives in ``tests/pg.py``, not in the package.)
Import the submodules directly; this package imports nothing so that
``python -m ash_ray.testing.fake_anthropic`` runs without warnings.
"""
