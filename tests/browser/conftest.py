"""Browser tests' pytest setup: the ``flaky`` marker known even without pytest-rerunfailures.

``harness.browser_marks`` marks every browser test ``flaky(reruns=BROWSER_RERUNS)``; the marker
comes from pytest-rerunfailures. Run with ``-p no:rerunfailures`` (to see whether the suite
passes with no retry at all, as issue 17 asks, three times in a row on a loaded machine) the
plugin is not loaded, and pytest's ``--strict-markers`` refused to collect the tests. The
marker is registered here in that case, and then does nothing. (The ``browser`` marker itself
is registered in pyproject.toml.)
"""

from __future__ import annotations


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("rerunfailures"):
        config.addinivalue_line(
            "markers", "flaky(reruns=0, reruns_delay=0): retries (pytest-rerunfailures; "
                       "not loaded in this run, so the tests run once)")
