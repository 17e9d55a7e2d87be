"""The benchmark's results as a table, JSON and a plot like MAX IV's published figures.

See docs/architecture.md#performance-anchors for those figures.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.measure import Measurement


@dataclass(frozen=True)
class Summary:
    """The repeats of one configuration: median and spread (min..max) of the frame rate."""

    kind: str
    case: str
    frame_bytes: int
    workers: int
    io_threads: int
    write: bool
    frames_per_s: float
    fps_min: float
    fps_max: float
    lost: int
    peak_rss: int
    repeats: int
    forward: str = "none"
    cpu_us_per_frame: float = 0.0
    """Median of the runs' receiver CPU time per frame, in µs."""
    forwarded: int = 0

    @property
    def gb_per_s(self) -> float:
        return self.frames_per_s * self.frame_bytes / 1e9


def summarize(measurements: list[Measurement]) -> list[Summary]:
    groups: dict[tuple[str, str, int, int, int, bool, str], list[Measurement]] = defaultdict(list)
    for m in measurements:
        key = (m.kind, m.case, m.frame_bytes, m.workers, m.io_threads, m.write, m.forward)
        groups[key].append(m)
    summaries = []
    for (kind, case, frame_bytes, workers, io_threads, write, forward), runs in groups.items():
        rates = [r.frames_per_s for r in runs]
        summaries.append(
            Summary(
                kind,
                case,
                frame_bytes,
                workers,
                io_threads,
                write,
                statistics.median(rates),
                min(rates),
                max(rates),
                sum(r.lost for r in runs),
                max(r.peak_rss for r in runs),
                len(runs),
                forward,
                statistics.median(r.cpu_us_per_frame for r in runs),
                sum(r.forwarded for r in runs),
            )
        )
    return summaries


def _baseline(summaries: list[Summary], kind: str, case: str) -> Summary | None:
    return next((s for s in summaries if s.kind == kind and s.case == case), None)


def ratio(summary: Summary, summaries: list[Summary]) -> float:
    """Receiver rate over min(sink, write) with writing, over the sink without."""
    sink = _baseline(summaries, "sink", summary.case)
    write = _baseline(summaries, "write", summary.case)
    limits = [sink.frames_per_s] if sink else []
    if summary.write and write:
        limits.append(write.frames_per_s)
    return summary.frames_per_s / min(limits) if limits else float("nan")


def bare(summary: Summary, summaries: list[Summary]) -> Summary | None:
    """The same receiver configuration without a forwarder, if it was measured."""
    return next(
        (
            s
            for s in summaries
            if s.kind == "receiver"
            and s.forward == "none"
            and (s.case, s.workers, s.io_threads, s.write)
            == (summary.case, summary.workers, summary.io_threads, summary.write)
        ),
        None,
    )


def ratio_to_bare(summary: Summary, summaries: list[Summary]) -> float | None:
    """A forwarding receiver's rate over the same receiver without a forwarder."""
    baseline = bare(summary, summaries)
    if summary.forward == "none" or baseline is None or baseline.frames_per_s == 0:
        return None
    return summary.frames_per_s / baseline.frames_per_s


FORWARD_LABELS = {"none": "", "bound": " fwd", "consumer": " fwd+cons"}
"""How the table names a receiver's forwarder: none, bound without a consumer, with one."""


def ratio_to_sink_write(summary: Summary, summaries: list[Summary]) -> float | None:
    """Receiver rate (writing) over the bare sink that writes: receiving and writing on
    the same cores, as the receiver must."""
    baseline = _baseline(summaries, "sink-write", summary.case)
    if not summary.write or baseline is None:
        return None
    return summary.frames_per_s / baseline.frames_per_s


def _spread(s: Summary) -> str:
    if s.repeats < 2 or s.frames_per_s == 0:
        return ""
    half = (s.fps_max - s.fps_min) / 2 / s.frames_per_s * 100
    return f"±{half:.0f}%"


def table(summaries: list[Summary]) -> str:
    """A table a person reads: baselines first, then each receiver configuration."""
    header = (
        f"{'what':<34}{'size':>7}{'frames/s':>11}{'spread':>7}{'GB/s':>7}"
        f"{'ratio':>7}{'r/s+w':>7}{'/bare':>7}{'lost':>6}{'peak MB':>9}{'CPU µs/f':>10}"
    )
    lines = [header, "-" * len(header)]
    order = {"sink": 0, "write": 1, "sink-write": 2, "receiver": 3}
    forwards = {name: index for index, name in enumerate(FORWARD_LABELS)}
    names = {"sink": "ZeroMQ sink", "write": "sequential write", "sink-write": "sink + write"}
    for s in sorted(
        summaries,
        key=lambda s: (
            order[s.kind],
            not s.write,
            s.workers,
            s.io_threads,
            forwards.get(s.forward, len(forwards)),
            s.frame_bytes,
        ),
    ):
        if s.kind == "receiver":
            what = (
                f"receiver {'write' if s.write else 'no-write'} {s.workers}w {s.io_threads}io"
                f"{FORWARD_LABELS.get(s.forward, ' ' + s.forward)}"
            )
            extra = (
                f"{ratio(s, summaries):>7.2f}{_shown(ratio_to_sink_write(s, summaries)):>7}"
                f"{_shown(ratio_to_bare(s, summaries)):>7}{s.lost:>6}{s.peak_rss / 1e6:>9.0f}"
                f"{s.cpu_us_per_frame:>10.1f}"
            )
        else:
            what = names[s.kind]
            extra = ""
        lines.append(
            f"{what:<34}{s.case:>7}{s.frames_per_s:>11.0f}{_spread(s):>7}{s.gb_per_s:>7.2f}{extra}"
        )
    return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def to_json(summaries: list[Summary], measurements: list[Measurement], meta: dict[str, Any]) -> str:
    rows = []
    for s in summaries:
        row = asdict(s) | {"gb_per_s": s.gb_per_s}
        if s.kind == "receiver":
            row["ratio"] = ratio(s, summaries)
            if s.write:
                row["ratio_to_sink_write"] = ratio_to_sink_write(s, summaries)
            if s.forward != "none":
                row["ratio_to_bare"] = ratio_to_bare(s, summaries)
        rows.append(row)
    runs = [
        asdict(m) | {"frames_per_s": m.frames_per_s, "cpu_us_per_frame": m.cpu_us_per_frame}
        for m in measurements
    ]
    return json.dumps({"meta": meta, "summary": rows, "runs": runs}, indent=2)


def plot(summaries: list[Summary], path: Path) -> None:
    """Frame rate and data rate against frame size, with and without writing, as MAX IV plots them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for col, write in enumerate((True, False)):
        rate_ax, data_ax = axes[0][col], axes[1][col]
        rate_ax.set_title("with file writing" if write else "without file writing")
        for label, selected in _series(summaries, write).items():
            sizes = [s.frame_bytes for s in selected]
            style = "--" if label.startswith(("ZeroMQ", "sequential", "sink +")) else "-o"
            rate_ax.plot(sizes, [s.frames_per_s for s in selected], style, label=label)
            data_ax.plot(sizes, [s.gb_per_s for s in selected], style, label=label)
        for ax in (rate_ax, data_ax):
            ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
        rate_ax.set_yscale("log")
        rate_ax.set_ylabel("frames/s")
        data_ax.set_ylabel("GB/s")
        data_ax.set_xlabel("frame size (bytes)")
        rate_ax.legend(fontsize=8)
    fig.suptitle("stream-receiver throughput on 127.0.0.1 (median of repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _series(summaries: list[Summary], write: bool) -> dict[str, list[Summary]]:
    lines: dict[str, list[Summary]] = defaultdict(list)
    for s in sorted(summaries, key=lambda s: s.frame_bytes):
        if s.kind == "sink":
            lines["ZeroMQ sink"].append(s)
        elif s.kind == "write" and write:
            lines["sequential write"].append(s)
        elif s.kind == "sink-write" and write:
            lines["sink + write"].append(s)
        elif s.kind == "receiver" and s.write == write:
            forward = {"bound": ", forwarder bound", "consumer": ", forwarding"}.get(s.forward, "")
            lines[f"receiver {s.workers} workers, {s.io_threads} io{forward}"].append(s)
    return lines
