"""A dependency-free SVG scatter plot (log x axis, one colour per label), so the results
folder's plots render wherever Markdown does."""

from __future__ import annotations

import math
from html import escape

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]
W, H, LEFT, RIGHT, TOP, BOTTOM = 720, 420, 70, 230, 40, 50


def _ticks(lo: float, hi: float, n: int = 8) -> list[float]:
    step = (hi - lo) / n or 1.0
    mag = 10 ** math.floor(math.log10(step))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= step), default=step)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def scatter_svg(
    points: list[tuple[float, float, str]],
    xlabel: str,
    ylabel: str,
    title: str,
    limit: float | None = None,
) -> str:
    """``points`` are (x, y, label); x on a log scale (x <= 0 is dropped); ``limit`` draws
    a dashed vertical line (a budget) at that x."""
    points = [p for p in points if p[0] > 0 and p[1] == p[1]]
    labels = list(dict.fromkeys(p[2] for p in points))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">{escape(title)}</text>',
    ]
    if points:
        lx = [math.log10(p[0]) for p in points]
        ys = [p[1] for p in points]
        if limit:
            lx.append(math.log10(limit))
        x0, x1 = min(lx) - 0.1, max(lx) + 0.1
        pad = max((max(ys) - min(ys)) * 0.1, 0.005)
        y0, y1 = min(ys) - pad, max(ys) + pad
        pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

        def sx(v: float) -> float:
            return LEFT + (math.log10(v) - x0) / (x1 - x0) * pw

        def sy(v: float) -> float:
            return TOP + (y1 - v) / (y1 - y0) * ph

        out.append(
            f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>'
        )
        for e in range(math.floor(x0), math.ceil(x1) + 1):
            for m in (1, 2, 5):
                v = m * 10.0**e
                if x0 <= math.log10(v) <= x1:
                    x = sx(v)
                    out.append(
                        f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}" '
                        'stroke="#eee"/>'
                    )
                    out.append(
                        f'<text x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle">{v:g}</text>'
                    )
        for v in _ticks(y0, y1):
            y = sy(v)
            out.append(
                f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#eee"/>'
            )
            out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.3g}</text>')
        if limit:
            x = sx(limit)
            out.append(
                f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}" '
                'stroke="#444" stroke-dasharray="6 4"/>'
            )
            out.append(
                f'<text x="{x - 4:.1f}" y="{TOP + 14}" text-anchor="end">budget {limit:g}</text>'
            )
        for x, y, label in points:
            colour = COLOURS[labels.index(label) % len(COLOURS)]
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{colour}" '
                f'fill-opacity="0.8"><title>{escape(label)}: {x:g}, {y:.4f}</title>'
                "</circle>"
            )
        out.append(
            f'<text x="{LEFT + pw / 2}" y="{H - 12}" text-anchor="middle">'
            f"{escape(xlabel)} (log scale)</text>"
        )
        out.append(
            f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" '
            f'transform="rotate(-90 16 {TOP + ph / 2})">{escape(ylabel)}</text>'
        )
        for i, label in enumerate(labels):
            y = TOP + 10 + 20 * i
            colour = COLOURS[i % len(COLOURS)]
            out.append(f'<circle cx="{W - RIGHT + 20}" cy="{y}" r="5" fill="{colour}"/>')
            out.append(f'<text x="{W - RIGHT + 32}" y="{y + 4}">{escape(label)}</text>')
    else:
        out.append(f'<text x="{LEFT}" y="{H / 2}">no models to plot</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
