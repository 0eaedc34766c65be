"""Fixtures for real-process tests: `cluster` (three brokers shared by a module's tests) and
`cluster_factory` (clusters owned by one test, for tests that kill, restart or configure).

Every cluster is stopped in teardown whatever happened. When a test fails, the state and log
tail of every broker it used is attached to the report (ClusterError messages already carry
them, so they are not repeated then). Figures a test measures (`report_figure`) are printed in
a section of the terminal summary: they are information, never a pass/fail criterion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import ClusterError, ClusterFactory, LocalCluster

FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture(autouse=True)
def _quiet_kafka_python(caplog: pytest.LogCaptureFixture) -> None:
    """kafka-python logs every dropped connection at ERROR; the tests kill brokers on purpose,
    and the brokers' own logs say more when something is wrong."""
    caplog.set_level(logging.CRITICAL, logger="kafka")


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[ClusterFactory]:
    factory = ClusterFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three brokers with default settings, shared by the tests of one module: tests using it
    must leave every broker running and use their own topic names."""
    factory = ClusterFactory(tmp_path_factory.mktemp("cluster"))
    try:
        yield factory()
    finally:
        factory.close()


def _clusters_of(item: pytest.Item) -> list[LocalCluster]:
    found: list[LocalCluster] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, LocalCluster):
            found.append(value)
        elif isinstance(value, ClusterFactory):
            found.extend(value.clusters)
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                               call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome: Any = yield
    report = outcome.get_result()
    if not report.failed or report.when != "call":
        return
    if call.excinfo is not None and call.excinfo.errisinstance(ClusterError):
        return
    for cluster in _clusters_of(item):
        report.sections.append((f"brokers of {cluster.data_root}", cluster.diagnostics()))


@pytest.fixture
def report_figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a measured figure for the terminal summary."""
    figures = request.config.stash.setdefault(FIGURES, [])

    def report(text: str) -> None:
        figures.append(f"{request.node.name}: {text}")
        print(text)

    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, [])
    if figures:
        terminalreporter.section("integration figures (measured, not asserted)")
        for line in figures:
            terminalreporter.write_line(line)
