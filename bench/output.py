"""The benchmark's results as a terminal table, JSON, Markdown and a PNG chart."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field

from bench.plan import higher_is_better


@dataclass
class Row:
    scenario: str
    figure: str
    unit: str
    contender: str
    samples: list = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        return self.scenario if self.figure == "rate" else f"{self.scenario} {self.figure}"

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


def ratio_text(row: Row, peer: Row | None) -> str:
    if peer is None or row.median is None or not peer.median:
        return ""
    ratio = row.median / peer.median
    better = ratio >= 1 if higher_is_better(row.unit) else ratio <= 1
    return f"{ratio:.2f}× {peer.contender}" + ("" if better else " (worse)")


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def table_lines(rows: list[Row], comparisons: dict[str, list[str]]) -> list[str]:
    index = {(r.label, r.contender): r for r in rows}
    header = f"{'workload':<24} {'layer':<22} {'median':>12} {'min–max':>23} {'unit':<13} ratio"
    lines = [header, "-" * len(header)]
    for row in rows:
        if row.error:
            lines.append(f"{row.label:<24} {row.contender:<22} {'error':>12}   {row.error[:60]}")
            continue
        spread = f"{_figure(min(row.samples))}–{_figure(max(row.samples))}"
        ratios = [ratio_text(row, index.get((row.label, peer))) for peer in comparisons.get(row.contender, [])]
        lines.append(f"{row.label:<24} {row.contender:<22} {_figure(row.median):>12} {spread:>23} "
                     f"{row.unit:<13} {', '.join(r for r in ratios if r)}")
    return lines


def write_json(path, meta: dict, rows: list[Row], comparisons: dict[str, list[str]]) -> None:
    index = {(r.label, r.contender): r for r in rows}
    data = {
        "meta": meta,
        "rows": [
            {**asdict(r), "label": r.label, "median": r.median,
             "ratios": {peer: (r.median / index[(r.label, peer)].median)
                        for peer in comparisons.get(r.contender, [])
                        if (r.label, peer) in index and r.median and index[(r.label, peer)].median}}
            for r in rows
        ],
    }
    with open(path, "w") as handle:
        json.dump(data, handle, indent=2)


def write_markdown(path, meta: dict, rows: list[Row], comparisons: dict[str, list[str]]) -> None:
    index = {(r.label, r.contender): r for r in rows}
    lines = [f"Measured {meta['date']} on {meta['cores']} cores, Python {meta['python']}; "
             + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", "",
             *[f"Floor of this machine: {what}: {value:,}." for what, value in meta.get("floors", {}).items()],
             "",
             "| workload | layer | median | min–max | unit | ratio |", "|---|---|---:|---:|---|---|"]
    for r in rows:
        if r.error:
            lines.append(f"| {r.label} | {r.contender} | error | | | {r.error[:80]} |")
            continue
        ratios = ", ".join(t for t in (ratio_text(r, index.get((r.label, p))) for p in comparisons.get(r.contender, [])) if t)
        lines.append(f"| {r.label} | {r.contender} | {_figure(r.median)} | "
                     f"{_figure(min(r.samples))}–{_figure(max(r.samples))} | {r.unit} | {ratios} |")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def write_chart(path, rows: list[Row]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r.label for r in rows if r.samples))
    columns = 3
    lines = -(-len(labels) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.2 * lines), squeeze=False)
    for ax, label in zip(axes.flat, labels):
        group = [r for r in rows if r.label == label and r.samples]
        names = [r.contender for r in group]
        medians = [r.median for r in group]
        errors = [[r.median - min(r.samples) for r in group], [max(r.samples) - r.median for r in group]]
        colors = ["#1f77b4" if not n.startswith("channels") else "#aaaaaa" for n in names]
        ax.barh(names, medians, xerr=errors, color=colors)
        for y, value in enumerate(medians):
            ax.text(value, y, f" {_figure(value)}", va="center", fontsize=7)
        ax.set_xlim(0, max(medians) * 1.35)
        unit = group[0].unit
        ax.set_title(f"{label} ({unit}, {'higher' if higher_is_better(unit) else 'lower'} is better)", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
