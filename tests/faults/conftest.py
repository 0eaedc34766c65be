"""Fixtures for fault-injection runs: `fault_run` runs the runner with its artifacts under the
test's tmp_path; `netns` and `mounts` skip a test (with the reason) on machines that cannot
make network namespaces or tmpfs mounts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.runner import RunConfig, RunResult, run


@pytest.fixture(autouse=True)
def _quiet_client_logs(caplog: pytest.LogCaptureFixture) -> None:
    """The nemesis kills brokers on purpose: the clients' connection errors are expected, and
    the history and the brokers' logs say more when something is wrong."""
    for name in ("kafka", "broker.client", "producer", "consumer"):
        caplog.set_level(logging.CRITICAL, logger=name)


@pytest.fixture
def netns() -> None:
    from tests.faults.netns import netns_unavailable
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"network partitions need network namespaces: {reason}")


@pytest.fixture
def mounts() -> None:
    from tests.faults.disk import mounts_unavailable
    reason = mounts_unavailable()
    if reason:
        pytest.skip(f"disk-full needs tmpfs mounts: {reason}")


@pytest.fixture
def fault_run(tmp_path: Path) -> Callable[..., RunResult]:
    """Run once with artifacts in tmp_path/<name>; the log goes to the captured stdout."""

    def start(name: str, **options: Any) -> RunResult:
        config = RunConfig(out_dir=tmp_path / name, **options)
        return run(config, log=lambda line: print(line, flush=True))

    return start
