"""A picture of a Grafana dashboard drawn from real Prometheus query results (no Grafana needed).

    python -m loadtest.dashboard_png                 # docs/dashboard-overview.png, ~2 minutes
    python -m loadtest.dashboard_png --seconds 60 --dashboard gatekeeper-decisions --out /tmp/d.png

Starts the loopback stack of loadtest/stack.py (redis-server with the demo data, two `gatekeeper
serve` processes, a private Prometheus scraping them, a little mixed traffic), lets it run, then
draws every panel of the dashboard as Grafana lays it out: each target's query_range result as a
line per series (labelled by the panel's legend format), a stat panel as its latest value.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import re
import tempfile
import time
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from loadtest.stack import ROOT, Prometheus, dashboards, observed_stack, substitute

BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
COLOURS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#fade2a", "#96d98d"]
ROW_INCH = 0.42  # one Grafana grid row


def legend(template: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return text or "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value:.1%}"
    if unit == "s":
        return f"{value * 1000:.2f} ms" if value < 1 else f"{value:.1f} s"
    if unit == "bytes":
        return f"{value / 2**20:.0f} MiB"
    if unit == "reqps":
        return f"{value:.1f} req/s"
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _style(ax: Axes, title: str) -> None:
    ax.set_facecolor(PANEL)
    ax.set_title(title, color=TEXT, fontsize=9, loc="left")
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.tick_params(colors=TEXT, labelsize=7)


def _timeseries(ax: Axes, panel: dict[str, Any], results: list[tuple[str, list[dict[str, Any]]]]) -> int:
    drawn = 0
    for template, series in results:
        for s in series:
            if all(math.isnan(float(v)) for _, v in s["values"]):
                continue  # no calls of that method in the window: Grafana draws nothing either
            xs = [datetime.fromtimestamp(float(t)) for t, _ in s["values"]]
            ys = [float(v) for _, v in s["values"]]
            ax.plot(xs, ys, linewidth=1.2, color=COLOURS[drawn % len(COLOURS)], label=legend(template, s["metric"]))
            drawn += 1
    unit = panel["fieldConfig"]["defaults"]["unit"]
    ax.grid(color=GRID, linewidth=0.5)
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: _fmt(v, unit)))
    if drawn:
        ax.legend(fontsize=6, loc="upper left", facecolor=PANEL, labelcolor=TEXT, edgecolor=GRID, ncol=2)
    return drawn


def _stat(ax: Axes, panel: dict[str, Any], results: list[tuple[str, list[dict[str, Any]]]]) -> int:
    unit = panel["fieldConfig"]["defaults"]["unit"]
    text_mode = panel.get("options", {}).get("textMode", "value")
    items = [(legend(t, s["metric"]), float(s["values"][-1][1])) for t, series in results for s in series]
    shown = "  ".join(name if text_mode == "name" else _fmt(value, unit) for name, value in items)
    ax.text(0.5, 0.45, shown or "no data", color=COLOURS[0], fontsize=16, ha="center", va="center",
            transform=ax.transAxes, weight="bold")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    return len(items)


def render(
    prometheus: Prometheus,
    dashboard: dict[str, Any],
    out: pathlib.Path,
    start: float,
    end: float,
    rate_interval: str = "15s",
) -> int:
    """Draw ``dashboard`` over [start, end] (rate windows as Grafana picks them for a short range
    scraped every second); returns how many series were drawn."""
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(16, rows * ROW_INCH + 0.9), facecolor=BACKGROUND)
    height = rows * ROW_INCH + 0.9
    fig.suptitle(f"{dashboard['title']}  (real query results from Prometheus)", color=TEXT, fontsize=12, x=0.01,
                 y=1 - 0.15 / height, ha="left")  # fmt: skip
    grid = fig.add_gridspec(rows, 24, left=0.05, right=0.99, top=1 - 0.75 / height, bottom=0.03, hspace=3.5,
                            wspace=1.2)  # fmt: skip
    step = max(1.0, (end - start) / 200)
    drawn = 0
    for panel in panels:
        g = panel["gridPos"]
        ax = fig.add_subplot(grid[g["y"] : g["y"] + g["h"], g["x"] : g["x"] + g["w"]])
        _style(ax, panel["title"])
        results = []
        for target in panel["targets"]:
            answer = prometheus.query_range(substitute(target["expr"], rate_interval=rate_interval), start, end, step)
            if answer.get("status") != "success":
                raise RuntimeError(f"{panel['title']}: {answer.get('error')}")
            results.append((target.get("legendFormat", ""), answer["data"]["result"]))
        drawn += (_stat if panel["type"] == "stat" else _timeseries)(ax, panel, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor=BACKGROUND)
    plt.close(fig)
    return drawn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120, help="how long to run traffic before drawing")
    parser.add_argument("--dashboard", default="gatekeeper-overview")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "dashboard-overview.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gk-dashboard-") as work, observed_stack(pathlib.Path(work)) as running:
        start = time.time() + 15  # the first rate window filled
        running.traffic.done.wait(args.seconds + 15)  # the window the picture covers
        drawn = render(running.prometheus, dashboards()[args.dashboard], args.out, start, time.time())
    print(f"wrote {args.out}: {drawn} series from {running.traffic.rounds} rounds of traffic")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
