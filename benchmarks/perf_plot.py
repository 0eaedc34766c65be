"""PNG charts of a benchmark's per-second timeline, with matplotlib when it is installed.

`plot_timeline` returns None on success and a one-line reason when it could not draw (matplotlib
missing), so callers print that and carry on: the figures do not depend on the chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["plot_timeline", "matplotlib_missing"]


def matplotlib_missing() -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install 'raftlog[bench]'): no chart drawn"
    return None


def plot_timeline(path: str, title: str, timeline: Sequence[dict[str, Any]], *,
                  marks: Sequence[tuple[float, str]] = ()) -> str | None:
    """Draw throughput (records/s) and latency (ms) per second, plus errors when any, with a
    vertical line at each (second, label) in `marks`."""
    missing = matplotlib_missing()
    if missing:
        return missing
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = [row["second"] for row in timeline]
    has_errors = any(row.get("produce_errors", 0) for row in timeline) or bool(marks)
    rows = 3 if has_errors else 2
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(10, 3 * rows))
    ax = axes[0]
    ax.plot(seconds, [r["produce_records"] for r in timeline], label="produced (acked)")
    if any(r.get("consume_records", 0) for r in timeline):
        ax.plot(seconds, [r["consume_records"] for r in timeline], label="consumed")
    ax.set_ylabel("records/s")
    ax.set_title(title)
    ax.legend(loc="upper right")
    ax = axes[1]
    for key, label in (("publish_p50_ms", "publish p50"), ("publish_p99_ms", "publish p99"),
                       ("e2e_p99_ms", "end-to-end p99")):
        if any(r.get(key, 0) for r in timeline):
            # A second without samples is a gap, not a zero (which a log axis cannot show).
            ax.plot(seconds, [r.get(key) or float("nan") for r in timeline], label=label,
                    marker=".")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.legend(loc="upper right")
    if has_errors:
        axes[2].bar(seconds, [r.get("produce_errors", 0) for r in timeline], color="tab:red",
                    align="edge", width=0.9)  # bucket s covers [s, s + 1)
        axes[2].set_ylabel("failed requests")
    for ax in axes:
        for second, label in marks:
            ax.axvline(second, color="black", linestyle="--", linewidth=0.8)
    for second, label in marks:
        axes[0].annotate(label, (second, axes[0].get_ylim()[1]), fontsize=8, rotation=90,
                         va="top", ha="right")
    axes[-1].set_xlabel("seconds since start")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
