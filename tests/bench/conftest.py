"""A local 3-broker cluster shared by the benchmark smoke tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.perf import local_cluster


@pytest.fixture(scope="session")
def bench_cluster() -> Iterator[Any]:
    with local_cluster() as cluster:
        yield cluster
