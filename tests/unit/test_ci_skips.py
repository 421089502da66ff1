"""With CI=true, a test that needs real infrastructure may not skip (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = """
import pytest

@pytest.mark.postgres
def test_needs_postgres():
    pytest.skip("no postgres here")

@pytest.mark.browser
def test_needs_a_browser():
    pytest.skip("no chromium here")

def test_plain():
    pytest.skip("an ordinary skip")

@pytest.mark.ray
@pytest.mark.xfail(reason="known")
def test_expected_failure():
    raise AssertionError
"""


@pytest.mark.parametrize(("ci", "failed"), [("true", 2), ("", 0)])
def test_ci_turns_infrastructure_skips_into_failures(tmp_path: Path, ci: str, failed: int) -> None:
    sample = ROOT / "tests" / "unit" / f"_ci_sample_{tmp_path.name}_test.py"
    sample.write_text(SAMPLE)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(sample)],
            cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "CI": ci},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        sample.unlink()
    summary = done.stdout.strip().splitlines()[-1]
    assert (f"{failed} failed" in summary) is bool(failed), done.stdout
    assert f"{3 - failed} skipped" in summary, done.stdout
    if failed:
        expected = "CI=true: a test that needs postgres skipped: Skipped: no postgres here"
        assert expected in done.stdout

