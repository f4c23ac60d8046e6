"""The status page's 90-day bar and the badges, as SVG drawn on the server (no script, no CDN).

The bar's colours come from the stylesheet's `.seg-<state>` classes (dark mode lives there) and each
state has its own height, so it reads without colour too; every day has a tooltip and the whole a
text alternative. Badges are standalone files (an <img> elsewhere), so they carry their own colours.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from status.uptime import Day

_HEIGHTS = {"down": 1.0, "degraded": 0.75, "up": 0.6, "maintenance": 0.45, "none": 0.3}
LABELS = {"up": "up", "degraded": "partly down", "down": "down", "maintenance": "maintenance", "none": "no data"}


def day_bar(days: Sequence[Day], *, name: str, height: int = 28) -> SafeString:
    """One rect per day, oldest left."""
    rects = []
    for i, day in enumerate(days):
        h = height * _HEIGHTS.get(day.state, 0.3)
        rects.append(
            f'<rect class="seg seg-{escape(day.state)}" x="{i * 4}" y="{height - h:.1f}" width="3" '
            f'height="{h:.1f}"><title>{escape(day.label)}</title></rect>'
        )
    counts = {s: sum(1 for d in days if d.state == s) for s in _HEIGHTS}
    summary = f"{name}, last {len(days)} days: " + ", ".join(
        f"{counts[s]} {'day' if counts[s] == 1 else 'days'} {LABELS[s]}" for s in _HEIGHTS if counts[s]
    )
    return mark_safe(
        f'<svg class="bar daybar" viewBox="0 0 {len(days) * 4} {height}" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(summary)}">{"".join(rects)}</svg>'
    )


# Badge colours (shields.io's names and their hex), with white text at 4.5:1 or more.
COLORS = {
    "brightgreen": "#1f7a1f",
    "green": "#2f7d32",
    "yellow": "#8a6d00",
    "orange": "#b34700",
    "red": "#c62828",
    "blue": "#1d4ed8",
    "lightgrey": "#5f6368",
}
_LABEL_BG = "#444d56"


def _text_width(text: str) -> int:
    # Verdana 11 px averages about 7 px a character; a badge a little wide is better than clipped.
    return max(int(len(text) * 7 + 10), 20)


def badge(label: str, message: str, color: str) -> str:
    """A flat shields-style badge: label on grey, message on the colour, both readable by a screen reader."""
    lw, mw = _text_width(label), _text_width(message)
    width = lw + mw
    fill = COLORS.get(color, COLORS["lightgrey"])
    title = escape(f"{label}: {message}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        f'<rect width="{lw}" height="20" fill="{_LABEL_BG}"/>'
        f'<rect x="{lw}" width="{mw}" height="20" fill="{fill}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{lw / 2:.1f}" y="14">{escape(label)}</text>'
        f'<text x="{lw + mw / 2:.1f}" y="14">{escape(message)}</text></g></svg>'
    )
