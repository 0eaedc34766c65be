"""`raftlog` commands run by `broker.cli.main` inside the test process, for the harness's frequent
looks at a cluster (topic describe, cluster status, ...).

Run as `python -m broker`, each look costs an interpreter start and the client's imports (about
0.3 s of CPU, more wall time on a busy machine); the harness makes a few hundred of them per
suite. In process the command is the same code with the same arguments, output and exit
status. What a process adds (the entry point, stdio, exit codes through `sys.exit`) is tested
by the tests that run the command itself (`LocalCluster.run_cli`).
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import threading
import traceback
from collections.abc import Sequence

__all__ = ["IN_PROCESS_COMMANDS", "CliHung", "in_process_usable", "run_in_process"]

# Commands bounded by their own --timeout-ms (so a call cannot hang the test process) that
# print their result and return an exit status without touching process-wide state.
IN_PROCESS_COMMANDS = frozenset({
    ("topic", "create"), ("topic", "list"), ("topic", "describe"), ("topic", "delete"),
    ("cluster", "status"),
})

_STDIO_LOCK = threading.Lock()  # one call at a time holds the process-wide stdout and stderr
_hung: list[threading.Thread] = []  # calls that did not return: they may still print


def in_process_usable() -> bool:
    """False once a call hung: its thread may still print, and `print` finds sys.stdout when
    it runs, so a later call's captured output could take its lines (callers then run the
    command as a process)."""
    _hung[:] = [t for t in _hung if t.is_alive()]
    return not _hung


class CliHung(Exception):
    """The command did not return within its bound (its thread is left to finish)."""


def run_in_process(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`broker.cli.main(argv)` with stdout and stderr captured, as a finished process would
    report it. It runs in a thread of its own: it runs an event loop (the caller may be in
    one), and the caller stops waiting after `timeout_s`. Raises CliHung then."""
    from broker import cli

    out, err = io.StringIO(), io.StringIO()
    codes: list[int] = []

    def run() -> None:
        try:
            codes.append(cli.main(list(argv)))
        except SystemExit as e:  # argparse's usage errors, as `python -m` would exit
            if isinstance(e.code, str):
                print(e.code, file=err)
            codes.append(e.code if isinstance(e.code, int) else 0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - a crash: what the interpreter would print
            traceback.print_exc(file=err)
            codes.append(1)

    worker = threading.Thread(target=run, name="raftlog-cli", daemon=True)
    # sys.stdout is process-wide: nothing else in the test process prints meanwhile (client
    # libraries log through logging, whose handlers keep the stream they were given).
    with _STDIO_LOCK, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        worker.start()
        worker.join(timeout_s)
    if worker.is_alive():
        _hung.append(worker)
        raise CliHung(f"output so far: {out.getvalue()!r} {err.getvalue()!r}")
    return subprocess.CompletedProcess(["raftlog", *argv], codes[0], out.getvalue(),
                                       err.getvalue())
