"""Hypothesis profiles for the suite.

Locally (the default profile) every run draws new examples, so property tests keep hunting.
In CI (``CI`` set, as ``.ci/run`` runs) the ``ci`` profile derandomises Hypothesis: each test
draws the same examples on every run, so a submission cannot be stopped by a rare draw that no
one can reproduce. A failure there is reproducible with ``HYPOTHESIS_PROFILE=ci``. Explicit
``@settings`` on a test still apply; they only leave ``derandomize`` to the profile.
"""
from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
settings.load_profile(PROFILE)


def pytest_report_header(config):
    return f"hypothesis profile: {PROFILE}"
