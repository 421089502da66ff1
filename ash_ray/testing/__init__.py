"""Test helpers users may reuse: the fake Anthropic API and a throwaway Postgres.

- :mod:`ash_ray.testing.fake_anthropic`: ``FakeAnthropic`` (and ``python -m`` CLI)
- :mod:`ash_ray.testing.postgres`: ``TempPostgres``

Import the submodules directly; this package imports nothing so that
``python -m ash_ray.testing.fake_anthropic`` runs without warnings.
"""
