"""Charts for the console, drawn on the server as SVG text.

Why server-side SVG and not a charting library in the browser:

* **No JavaScript dependency.** Nothing to ship, audit or keep up to date; the console's one small script
  only confirms forms, binds keys and refreshes a region. A chart is there whether or not it runs.
* **CSP-safe.** The console's policy allows no inline script and no inline ``style``: the markup uses SVG
  presentation attributes (``stroke``, ``fill``, ``x``, ``y``…) and classes styled by ``console.css``, which
  the policy allows. A library drawing in the browser would need ``style-src 'unsafe-inline'`` or a canvas.
* **Renders without scripts**, in a screenshot and in print; ``data-live`` refreshes a chart by swapping the
  region's HTML, nothing to re-initialise. Every chart also has its numbers as a table (the fallback for
  screen readers and for copying).
* **Testable as text.** A unit test reads the series, the interval and the labels in the markup; no browser.
* **Small.** A 30-point chart with two arms is a few kilobytes.

Accessibility: each ``<svg>`` is ``role="img"`` labelled by its ``<title>`` and described by its ``<desc>``;
colours are the CSS swatches' (baseline blue, candidate orange, shadow purple, all ≥ 4.5:1 on white) and every
series is also named in the legend and the table, so nothing depends on colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from markupsafe import Markup, escape

__all__ = ["COLOURS", "LineChart", "Series", "interval_strip", "render_line_chart", "svg_line_chart"]

COLOURS = {"baseline": "#1f4e79", "candidate": "#b3471c", "shadow": "#6b3fa0"}
"""The arms' colours (``--baseline``, ``--candidate``, ``--shadow`` in console.css); CSS classes override them."""

MUTED = "#545d68"
GRID = "#d5dae1"
BAD = "#a4161a"

WIDTH, HEIGHT = 640, 250
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 14, 40

Point = tuple[float, float | None]
BandPoint = tuple[float, float | None, float | None]


@dataclass(frozen=True)
class Series:
    """One arm's line (``points``), its interval (``band``) and an optional second, dashed line (a p95)."""

    label: str
    kind: str  # baseline | candidate | shadow: the colour and the CSS class
    points: Sequence[Point]
    band: Sequence[BandPoint] = ()
    dashed: Sequence[Point] = ()
    dashed_label: str = ""


@dataclass(frozen=True)
class LineChart:
    """A time chart: series over epoch seconds, a y axis, an optional threshold line and event markers."""

    chart_id: str
    title: str
    description: str
    y_label: str
    series: Sequence[Series]
    y_format: Callable[[float], str] = field(default=lambda v: f"{v:g}")
    line_label: str = "value"
    band_label: str = ""
    threshold: tuple[float, str] | None = None
    markers: Sequence[tuple[float, str]] = ()
    y_min: float = 0.0
    y_max: float | None = None  # a fixed top; None: from the data
    y_cap: float | None = None  # the highest top the data may set (1.0 for a rate: a wide early interval is cut)


def _nice_step(span: float, ticks: int) -> float:
    raw = span / max(ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _time_label(epoch: float, span: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%m-%d %H:%M" if span > 86400 else "%H:%M")


def _values(chart: LineChart) -> list[float]:
    out: list[float] = []
    for s in chart.series:
        out += [y for _, y in s.points if y is not None] + [y for _, y in s.dashed if y is not None]
        out += [v for _, lo, hi in s.band for v in (lo, hi) if v is not None and math.isfinite(v)]
    if chart.threshold is not None:
        out.append(chart.threshold[0])
    return out


def _segments(points: Sequence[Point]) -> list[list[tuple[float, float]]]:
    """Runs of points without a gap (a None value breaks the line)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None or not math.isfinite(y):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((x, y))
    return [r for r in runs if r]


def svg_line_chart(chart: LineChart) -> str:
    """The chart as an ``<svg>`` element (escaped text throughout)."""
    xs = [x for s in chart.series for x, _ in s.points]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 60.0)
    if x1 - x0 < 60:
        x0, x1 = x0 - 30, x1 + 30
    values = _values(chart)
    top = chart.y_max if chart.y_max is not None else max([*values, chart.y_min]) * 1.1
    if chart.y_cap is not None:
        top = min(top, chart.y_cap)
    if top <= chart.y_min:
        top = chart.y_min + 1.0
    step = _nice_step(top - chart.y_min, 4)
    if chart.y_max is None:
        top = chart.y_min + step * math.ceil((top - chart.y_min) / step - 1e-9)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        y = min(max(y, chart.y_min), top)
        return TOP + plot_h - (y - chart.y_min) / (top - chart.y_min) * plot_h

    tid, did = f"{chart.chart_id}-title", f"{chart.chart_id}-desc"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="{escape(tid)}" aria-describedby="{escape(did)}" class="chart-svg" '
             f'font-family="system-ui, sans-serif" font-size="11">',
             f'<title id="{escape(tid)}">{escape(chart.title)}</title>',
             f'<desc id="{escape(did)}">{escape(chart.description)}</desc>']
    # grid and y axis
    tick = chart.y_min
    while tick <= top + step / 1000:
        y = py(tick)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y)}" y2="{_num(y)}" stroke="{GRID}" '
                     'stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{_num(y + 4)}" text-anchor="end" fill="{MUTED}">'
                     f'{escape(chart.y_format(tick))}</text>')
        tick += step
    parts.append(f'<text x="12" y="{_num(TOP + plot_h / 2)}" text-anchor="middle" fill="{MUTED}" '
                 f'transform="rotate(-90 12 {_num(TOP + plot_h / 2)})">{escape(chart.y_label)}</text>')
    # x axis
    span = x1 - x0
    base = TOP + plot_h
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(base)}" y2="{_num(base)}" stroke="{MUTED}"/>')
    for i in range(5):
        x = x0 + span * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{_num(px(x))}" y="{_num(base + 15)}" text-anchor="{anchor}" fill="{MUTED}">'
                     f'{escape(_time_label(x, span))}</text>')
    parts.append(f'<text x="{_num(LEFT + plot_w / 2)}" y="{HEIGHT - 6}" text-anchor="middle" fill="{MUTED}">'
                 'time (UTC)</text>')
    # events
    for x, label in chart.markers:
        if not x0 <= x <= x1:
            continue
        mx = _num(px(x))
        parts.append(f'<g class="marker"><title>{escape(label)}</title>'
                     f'<line x1="{mx}" x2="{mx}" y1="{TOP}" y2="{_num(base)}" stroke="{MUTED}" '
                     'stroke-dasharray="2 3"/>'
                     f'<text x="{mx}" y="{TOP + 9}" dx="3" fill="{MUTED}" font-size="10">{escape(label)}</text></g>')
    # threshold
    if chart.threshold is not None:
        value, label = chart.threshold
        ty = _num(py(value))
        parts.append(f'<g class="threshold"><line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty}" y2="{ty}" '
                     f'stroke="{BAD}" stroke-dasharray="6 4" stroke-width="1.5"/>'
                     f'<text x="{WIDTH - RIGHT - 4}" y="{ty}" dy="-4" text-anchor="end" fill="{BAD}">'
                     f'{escape(label)}</text></g>')
    # bands first, then lines on top
    for s in chart.series:
        colour = COLOURS.get(s.kind, MUTED)
        band = [(x, lo, hi) for x, lo, hi in s.band
                if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)]
        if len(band) >= 2:
            upper = " ".join(f"{_num(px(x))},{_num(py(hi))}" for x, _, hi in band)
            lower = " ".join(f"{_num(px(x))},{_num(py(lo))}" for x, lo, _ in reversed(band))
            parts.append(f'<polygon class="band {escape(s.kind)}" points="{upper} {lower}" fill="{colour}" '
                         f'fill-opacity="0.15" stroke="none"><title>{escape(s.label)}: '
                         f'{escape(chart.band_label)}</title></polygon>')
        elif len(band) == 1:
            x, lo, hi = band[0]
            parts.append(f'<line class="band {escape(s.kind)}" x1="{_num(px(x))}" x2="{_num(px(x))}" '
                         f'y1="{_num(py(lo))}" y2="{_num(py(hi))}" stroke="{colour}" stroke-opacity="0.35" '
                         'stroke-width="8"/>')
    for s in chart.series:
        colour = COLOURS.get(s.kind, MUTED)
        for points, dash, what in ((s.dashed, ' stroke-dasharray="5 4"', s.dashed_label),
                                   (s.points, "", chart.line_label)):
            for run in _segments(points):
                name = f"{s.label}: {what}"
                if len(run) == 1:
                    x, y = run[0]
                    parts.append(f'<circle class="line {escape(s.kind)}" cx="{_num(px(x))}" cy="{_num(py(y))}" '
                                 f'r="3.5" fill="{colour}"><title>{escape(name)}</title></circle>')
                    continue
                d = " ".join(f"{'M' if i == 0 else 'L'}{_num(px(x))},{_num(py(y))}" for i, (x, y) in enumerate(run))
                parts.append(f'<path class="line {escape(s.kind)}" d="{d}" fill="none" stroke="{colour}" '
                             f'stroke-width="2"{dash}><title>{escape(name)}</title></path>')
    parts.append("</svg>")
    return "".join(parts)


def _cell(value: float | None, fmt: Callable[[float], str]) -> str:
    return "–" if value is None or not math.isfinite(value) else fmt(value)


def _table(chart: LineChart) -> str:
    """The chart's numbers: a row per time, a column per series (with its interval and dashed line)."""
    head = ['<th scope="col">time (UTC)</th>']
    for s in chart.series:
        head.append(f'<th scope="col" class="num">{escape(s.label)} {escape(chart.line_label)}</th>')
        if s.band:
            head.append(f'<th scope="col" class="num">{escape(chart.band_label)}</th>')
        if s.dashed:
            head.append(f'<th scope="col" class="num">{escape(s.label)} {escape(s.dashed_label)}</th>')
    xs = sorted({x for s in chart.series for x, _ in s.points})
    rows = []
    for x in xs:
        cells = [f'<th scope="row">{escape(datetime.fromtimestamp(x, UTC).strftime("%Y-%m-%d %H:%M:%S"))}</th>']
        for s in chart.series:
            y = dict(s.points).get(x)
            cells.append(f'<td class="num">{escape(_cell(y, chart.y_format))}</td>')
            if s.band:
                lo, hi = next(((lo, hi) for bx, lo, hi in s.band if bx == x), (None, None))
                text = "–" if lo is None or hi is None else f"{_cell(lo, chart.y_format)} – {_cell(hi, chart.y_format)}"
                cells.append(f'<td class="num">{escape(text)}</td>')
            if s.dashed:
                cells.append(f'<td class="num">{escape(_cell(dict(s.dashed).get(x), chart.y_format))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="chart-data"><caption>{escape(chart.title)}: the numbers</caption>'
            f'<thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def render_line_chart(chart: LineChart) -> Markup:
    """A ``<figure>``: caption, the SVG, a legend, and the numbers as a table under a disclosure."""
    legend = []
    for s in chart.series:
        extra = f", {s.dashed_label} dashed" if s.dashed else ""
        band = f", band: {chart.band_label}" if s.band and chart.band_label else ""
        legend.append(f'<span><span class="swatch {escape(s.kind)}" aria-hidden="true"></span>'
                      f'{escape(s.label)} ({escape(chart.line_label)}{escape(extra)}{escape(band)})</span>')
    if chart.threshold is not None:
        legend.append(f'<span><span class="swatch threshold" aria-hidden="true"></span>'
                      f'{escape(chart.threshold[1])}</span>')
    return Markup(
        f'<figure class="chart" id="{escape(chart.chart_id)}"><figcaption>{escape(chart.title)}</figcaption>'
        f'{svg_line_chart(chart)}<div class="legend">{"".join(legend)}</div>'
        f'<details><summary>The numbers</summary>{_table(chart)}</details></figure>')


def interval_strip(chart_id: str, label: str, estimate: float, low: float, high: float, threshold: float,
                   *, fired: bool, fmt: Callable[[float], str], upper_is_bad: bool = True) -> Markup:
    """A small horizontal picture of one trigger: its estimate, interval and threshold.

    ``upper_is_bad``: the trigger fires above the threshold (error rate, latency); False: below it (quality,
    agreement). An empty string when the interval is not finite (the trigger still waits for data).
    """
    if not all(math.isfinite(v) for v in (estimate, low, high, threshold)):
        return Markup("")
    width, height, pad = 220, 30, 10
    lo_v, hi_v = min(low, threshold, estimate), max(high, threshold, estimate)
    if hi_v - lo_v < 1e-12:
        lo_v, hi_v = lo_v - 1, hi_v + 1
    margin = (hi_v - lo_v) * 0.08
    lo_v, hi_v = lo_v - margin, hi_v + margin

    def px(v: float) -> str:
        return _num(pad + (v - lo_v) / (hi_v - lo_v) * (width - 2 * pad))

    colour = BAD if fired else COLOURS["candidate"]
    side = "above" if upper_is_bad else "below"
    text = (f"{label}: estimate {fmt(estimate)}, interval {fmt(low)} to {fmt(high)}, fires {side} {fmt(threshold)}"
            f"{' — fired' if fired else ''}")
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="strip" '
        f'aria-labelledby="{escape(chart_id)}-t"><title id="{escape(chart_id)}-t">{escape(text)}</title>'
        f'<line x1="{pad}" x2="{width - pad}" y1="15" y2="15" stroke="{GRID}"/>'
        f'<line x1="{px(low)}" x2="{px(high)}" y1="15" y2="15" stroke="{colour}" stroke-width="4" '
        'stroke-linecap="round"/>'
        f'<circle cx="{px(estimate)}" cy="15" r="4.5" fill="{colour}"/>'
        f'<line x1="{px(threshold)}" x2="{px(threshold)}" y1="3" y2="27" stroke="{BAD}" stroke-width="2" '
        'stroke-dasharray="3 2"/></svg>')
