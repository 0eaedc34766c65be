"""Short fault-injection runs on real broker processes, each kind at least once: the checker
finds no lost, duplicated, inconsistent or unordered record and every partition is led and
written again soon after the heal. Longer runs: `python -m tests.faults --minutes M`.

The kinds are grouped into a few runs that share a cluster each, so the whole module takes
a couple of minutes. Each run's seed is fixed (a failure replays with the command its summary
prints); the runner's summary is the assertion message."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.history import FINAL_READER, History
from tests.faults.nemesis import Schedule, generate
from tests.faults.__main__ import build_parser, config_from_args
from tests.faults.runner import RunResult, finish, make_schedule, replay_command
from tests.integration.processes import REPO_ROOT, repo_env

RunFn = Callable[..., RunResult]
# One of each kind (duration 0), faults and gaps at about a third of their normal length.
QUICK = {"duration_s": 0.0, "time_scale": 0.35, "partitions": 6, "rate_per_s": 200.0}


def _assert_passed(result: RunResult) -> None:
    assert result.ok and result.liveness_ok, result.summary
    assert sum(result.faults.values()) >= 1, result.summary


@pytest.mark.timeout(240)
def test_process_faults_on_three_brokers(fault_run: RunFn) -> None:
    result = fault_run("process", seed=1, brokers=3, **QUICK,
                       kinds=("kill-random", "rolling-restart", "full-restart"))
    _assert_passed(result)


@pytest.mark.timeout(240)
def test_network_partitions(fault_run: RunFn, netns: None) -> None:
    result = fault_run("partitions", seed=2, brokers=3, **QUICK,
                       kinds=("partition-majority", "partition-leader", "partition-one-way"))
    _assert_passed(result)


@pytest.mark.timeout(240)
def test_leader_kills_and_pauses_on_five_brokers_three_voters(fault_run: RunFn) -> None:
    result = fault_run("five", seed=3, brokers=5, **QUICK,
                       kinds=("kill-majority", "kill-leader", "pause"))
    _assert_passed(result)


@pytest.mark.timeout(240)
def test_disk_full_and_corrupt_segment(fault_run: RunFn, mounts: None) -> None:
    result = fault_run("disk", seed=4, brokers=3, **QUICK,
                       kinds=("disk-full", "corrupt-segment"))
    _assert_passed(result)


# ---- reporting and replay (no cluster) ---------------------------------------------------------
def _doctored_history(path: Path) -> None:
    """An acknowledged record that the final reader finds with another value: lost."""
    with History(path) as h:
        h.record("send", producer="p0", value="p0-1", partition=0)
        h.record("ack", producer="p0", value="p0-1", partition=0, offset=0)
        h.record("read", consumer=FINAL_READER, partition=0, offset=0, value="p0-2")
        h.record("note", what="final_end", partition=0, end=1, reached=1)


def test_a_failed_run_writes_its_artifacts_and_prints_the_replay_command(tmp_path: Path) -> None:
    out = tmp_path / "failed"
    (out / "cluster").mkdir(parents=True)
    (out / "cluster" / "broker-1.log").write_text("a broker's log\n")
    schedule = generate(seed=9, duration_s=0, kinds=("kill-leader",), brokers=3, partitions=1)
    schedule.write(out / "schedule.json")
    _doctored_history(out / "history.jsonl")
    printed: list[str] = []
    result = finish(out, liveness_ok=True, liveness="fine", faults={"kill-leader": 1},
                    log=printed.append)
    assert not result.ok and not result.verdict.ok, result.summary
    assert result.verdict.counts["lost"] + result.verdict.counts["inconsistent"] >= 1
    text = "\n".join(printed)
    assert replay_command(out) in text and "FAILED" in text, text
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["ok"] is False and verdict["problems"], verdict
    assert (out / "logs" / "broker-1.log").read_text() == "a broker's log\n"
    assert (out / "cluster").exists(), "a failed run keeps the brokers' data"
    assert "lost" in (out / "summary.txt").read_text()


def test_a_liveness_miss_fails_the_run_even_when_the_history_is_clean(tmp_path: Path) -> None:
    out = tmp_path / "stuck"
    out.mkdir()
    with History(out / "history.jsonl"):
        pass
    result = finish(out, liveness_ok=False, liveness="partition 3 never written",
                    faults={}, log=lambda _line: None)
    assert result.verdict.ok and not result.ok
    assert "partition 3 never written" in result.summary
    assert replay_command(out) in result.summary


def _faults_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tests.faults", *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, env=repo_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_replay_runs_the_same_schedule(tmp_path: Path) -> None:
    """A seed gives one schedule; a run's directory replays exactly that schedule."""
    argv = ["--seed", "77", "--minutes", "0.5", "--brokers", "5",
            "--faults", "kill-leader,pause,kill-majority,corrupt-segment"]
    first = _faults_cli(*argv, "--dry-run")
    schedule = Schedule.from_json(first)
    in_process = config_from_args(build_parser().parse_args([*argv, "--dry-run"]))
    assert make_schedule(in_process) == schedule
    assert schedule.seed == 77 and schedule.brokers == 5 and schedule.voters == 3
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    schedule.write(artifacts / "schedule.json")
    replayed = _faults_cli("--replay", str(artifacts), "--dry-run")
    assert Schedule.from_json(replayed) == schedule
