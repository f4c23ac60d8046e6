"""Server-side inline SVG charts: no JavaScript charting library, no CDN (air-gapped networks).

Colours come from CSS classes (so dark mode and the colour-blind-safe palette live in the
stylesheet); every chart has a text alternative, and the uptime bar encodes state in the
segment height as well as its colour.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

if TYPE_CHECKING:  # reports draws with these functions; the types are only annotations here
    from dashboard.reports import LatencyPoint, Segment

# Segment height as a share of the bar: state readable without colour.
_HEIGHTS = {"down": 1.0, "degraded": 0.75, "up": 0.55, "misconfigured": 0.48, "maintenance": 0.42, "none": 0.3}
_LABELS = {
    "down": "down",
    "degraded": "degraded",
    "up": "up",
    "misconfigured": "misconfigured (not counted)",
    "maintenance": "maintenance",
    "none": "no data",
}
# A colour of its own as a presentation attribute: a stylesheet rule for `.seg-maintenance` overrides it.
# Blue as Uptime Kuma and Statuspage show maintenance; 3:1 or more against light and dark cards.
_FILLS = {"maintenance": "#3b82f6"}


def _runs(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Split a series at its gaps (None), so a line is never drawn across missing data."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y))
    return [r for r in runs if r]


def _path(run: list[tuple[float, float]]) -> str:
    return " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(run))


def sparkline(values: Sequence[float | None], *, width: int = 120, height: int = 28, label: str = "") -> SafeString:
    """A small latency line (oldest left); a lone point is drawn as a dot."""
    known = [v for v in values if v is not None]
    desc = label or "latency"
    if not known:
        return mark_safe(
            f'<svg class="spark" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
            f'aria-label="{escape(desc)}: no data"><line class="spark-none" vector-effect="non-scaling-stroke" '
            f'x1="0" y1="{height - 2}" x2="{width}" y2="{height - 2}"/></svg>'
        )
    top = max(known) or 1.0
    step = width / max(len(values) - 1, 1)
    pts = [(i * step, None if v is None else height - 2 - (v / top) * (height - 4)) for i, v in enumerate(values)]
    parts = []
    for run in _runs(pts):
        if len(run) == 1:  # a lone hour: a short dash, which survives the stretch to the card's width
            (x, y), half = run[0], min(step / 2, 3)
            run = [(max(x - half, 0), y), (min(x + half, width), y)]
        parts.append(f'<path class="spark-line" vector-effect="non-scaling-stroke" d="{_path(run)}"/>')
    text = f"{desc}: last {known[-1]:.0f} ms, max {top:.0f} ms"
    return mark_safe(
        f'<svg class="spark" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(text)}"><title>{escape(text)}</title>{"".join(parts)}</svg>'
    )


def uptime_bar(segments: Sequence[Segment], *, height: int = 24, label: str = "uptime") -> SafeString:
    """One rect per segment (oldest left), its class and height set by its state (dashboard.reports.uptime_bar:
    the worst state that counted, or "maintenance"); each has a tooltip, the whole an hours-per-state label."""
    n = max(len(segments), 1)
    gap = 1
    width = n * 4
    rects = []
    for i, seg in enumerate(segments):
        h = height * _HEIGHTS.get(seg.state, 0.3)
        title = f"{seg.start:%Y-%m-%d %H:%M} UTC: {_LABELS.get(seg.state, seg.state)}"
        if seg.total:
            if seg.maintenance:
                title += (
                    f" ({seg.total} probes, {seg.maintenance} in maintenance: not counted in uptime; "
                    f"{seg.bad} failed outside it)"
                )
            else:
                title += f" ({seg.total} probes, {seg.bad} failed)"
        fill = f' fill="{_FILLS[seg.state]}"' if seg.state in _FILLS else ""
        rects.append(
            f'<rect class="seg seg-{escape(seg.state)}"{fill} x="{i * 4}" y="{height - h:.1f}" width="{4 - gap}" '
            f'height="{h:.1f}"><title>{escape(title)}</title></rect>'
        )
    counts = {s: sum(1 for seg in segments if seg.state == s) for s in _HEIGHTS}
    summary = f"{label}: " + ", ".join(f"{counts[s]} h {_LABELS[s]}" for s in _HEIGHTS if counts[s])
    return mark_safe(
        f'<svg class="bar" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(summary)}">{"".join(rects)}</svg>'
    )


def _tick(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def latency_chart(points: Sequence[LatencyPoint], *, range_key: str, width: int = 720, height: int = 220) -> SafeString:
    """p50 (solid) and p95 (dashed) latency per bucket with a labelled y axis and time ticks."""
    left, right, top, bottom = 48, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    known = [p.p95 for p in points if p.p95 is not None] + [p.p50 for p in points if p.p50 is not None]
    ymax = max(known) * 1.1 if known else 1.0
    n = max(len(points) - 1, 1)

    def x(i: int) -> float:
        return left + plot_w * i / n

    def y(v: float) -> float:
        return top + plot_h * (1 - v / ymax)

    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="latency p50 and p95 over {escape(range_key)}">'
    ]
    for frac in (0, 0.25, 0.5, 0.75, 1):
        v = ymax * frac
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>')
        out.append(f'<text class="axis" x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{_tick(v)}</text>')
    out.append(f'<text class="axis" x="2" y="{top + 8}">ms</text>')
    if points:
        for i in sorted({0, len(points) // 2, len(points) - 1}):
            out.append(
                f'<text class="axis" x="{x(i):.1f}" y="{height - 6}" text-anchor="middle">'
                f"{escape(_time_label(points[i].start, range_key))}</text>"
            )
    if not known:
        out.append(
            f'<text class="axis" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
            f'text-anchor="middle">no data in this range</text>'
        )
    for name in ("p95", "p50"):
        series = [(x(i), None if getattr(p, name) is None else y(getattr(p, name))) for i, p in enumerate(points)]
        for run in _runs(series):
            if len(run) == 1:
                out.append(f'<circle class="{name}" cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="2"/>')
            else:
                out.append(f'<path class="{name}" d="{_path(run)}"/>')
    out.append("</svg>")
    return mark_safe("".join(out))


def _time_label(when: dt.datetime, range_key: str) -> str:
    if range_key in ("1h", "24h"):
        return f"{when:%H:%M}"
    return f"{when:%m-%d}" if range_key == "30d" else f"{when:%m-%d %H:00}"
