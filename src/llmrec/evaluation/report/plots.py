"""Small inline SVG charts (no plotting library): line charts and grouped bar charts with axes, ticks, a legend
and a hover title on every point or bar."""

from __future__ import annotations

import math
from html import escape

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
_DASHES = ["", "6,3", "2,3"]
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 16, 30, 42
_LEGEND_ROW = 18


def _e(s) -> str:
    return escape(str(s), quote=True)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks, v = [], start
    while v < hi + step * 0.999:
        ticks.append(float(round(v, 12)))
        v += step
    return ticks


def _tick_label(v: float, ticks: list[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(v) or 1.0
    digits = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if round(step / 10 ** math.floor(math.log10(step)), 6) == 2.5 else 0)
    return f"{v:.{digits}f}"


def _style(i: int) -> tuple[str, str]:
    color = PALETTE[i % len(PALETTE)]
    dash = _DASHES[(i // len(PALETTE)) % len(_DASHES)]
    return color, (f" stroke-dasharray='{dash}'" if dash else "")


def _legend(names: list[str], width: int, y0: float, marker: str = "line") -> tuple[list[str], int]:
    """Legend entries laid out in rows under the plot; returns (svg parts, height used)."""
    out, x, y = [], _LEFT, y0
    for i, name in enumerate(names):
        w = 26 + 6.5 * len(name)
        if x + w > width and x > _LEFT:
            x, y = _LEFT, y + _LEGEND_ROW
        color, dash = _style(i)
        if marker == "line":
            out.append(f"<line x1='{x}' y1='{y - 4}' x2='{x + 18}' y2='{y - 4}' stroke='{color}' stroke-width='2.5'{dash}/>")
        else:
            out.append(f"<rect x='{x + 4}' y='{y - 10}' width='11' height='11' fill='{color}'/>")
        out.append(f"<text x='{x + 23}' y='{y}' font-size='11' fill='#333'>{_e(name)}</text>")
        x += w
    return out, int(y - y0 + _LEGEND_ROW)


def _frame(width: int, height: int, title: str, y_label: str, x_label: str, yt: list[float], y_of,
           x_label_dy: int = 32) -> list[str]:
    pw = width - _LEFT - _RIGHT
    out = [f"<text x='{width / 2}' y='18' font-size='13' font-weight='600' text-anchor='middle' fill='#222'>{_e(title)}</text>"]
    for v in yt:
        y = y_of(v)
        out.append(f"<line x1='{_LEFT}' y1='{y:.1f}' x2='{_LEFT + pw}' y2='{y:.1f}' stroke='#e6e6e6'/>")
        out.append(f"<text x='{_LEFT - 6}' y='{y + 4:.1f}' font-size='10' text-anchor='end' fill='#555'>{_tick_label(v, yt)}</text>")
    out.append(f"<line x1='{_LEFT}' y1='{_TOP}' x2='{_LEFT}' y2='{height}' stroke='#888'/>")
    out.append(f"<line x1='{_LEFT}' y1='{height}' x2='{_LEFT + pw}' y2='{height}' stroke='#888'/>")
    out.append(f"<text x='14' y='{(_TOP + height) / 2:.1f}' font-size='11' fill='#444' text-anchor='middle' "
               f"transform='rotate(-90 14 {(_TOP + height) / 2:.1f})'>{_e(y_label)}</text>")
    out.append(f"<text x='{_LEFT + pw / 2:.1f}' y='{height + x_label_dy}' font-size='11' fill='#444' text-anchor='middle'>{_e(x_label)}</text>")
    return out


def _svg(width: int, total_h: int, title: str, body: list[str]) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{total_h}' viewBox='0 0 {width} {total_h}' "
            f"role='img' aria-label='{_e(title)}'>" + "".join(body) + "</svg>")


def line_chart(series: list[tuple[str, list[tuple[float, float]]]], *, title: str, x_label: str, y_label: str,
               x_labels: list[str] | None = None, from_zero: bool = True, width: int = 560, height: int = 300) -> str:
    """``series``: (name, [(x, y), ...]). With ``x_labels`` the x values are positions 0..n-1 named by them."""
    pts = [(x, y) for _, s in series for x, y in s if y is not None and math.isfinite(y)]
    if not pts:
        return ""
    plot_bottom = height - _BOTTOM
    xs = [p[0] for p in pts]
    x_lo, x_hi = (0, max(len(x_labels) - 1, 1)) if x_labels else (min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1)
    ys = [p[1] for p in pts]
    lo, hi = (0.0 if from_zero else min(ys)), max(ys)
    yt = nice_ticks(lo, hi)
    y_lo, y_hi = yt[0], yt[-1] if yt[-1] > yt[0] else yt[0] + 1
    pw, ph = width - _LEFT - _RIGHT, plot_bottom - _TOP

    def X(x):
        return _LEFT + 10 + (x - x_lo) / (x_hi - x_lo) * (pw - 20)

    def Y(y):
        return _TOP + (1 - (y - y_lo) / (y_hi - y_lo)) * ph

    body = _frame(width, plot_bottom, title, y_label, x_label, yt, Y)
    if x_labels:
        xticks = list(enumerate(x_labels))
    else:
        xt = nice_ticks(x_lo, x_hi, 6)
        if all(float(x).is_integer() for x in xs):  # epochs: whole numbers only
            xt = [float(v) for v in range(int(x_lo), int(x_hi) + 1)] if x_hi - x_lo <= 8 else [v for v in xt if v.is_integer()]
        xticks = [(v, str(int(v)) if float(v).is_integer() else _tick_label(v, xt)) for v in xt if x_lo <= v <= x_hi]
    for v, lab in xticks:
        body.append(f"<text x='{X(v):.1f}' y='{plot_bottom + 15}' font-size='10' text-anchor='middle' fill='#555'>{_e(lab)}</text>")
    for i, (name, s) in enumerate(series):
        s = [(x, y) for x, y in s if y is not None and math.isfinite(y)]
        if not s:
            continue
        color, dash = _style(i)
        path = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in s)
        body.append(f"<polyline class='series' fill='none' stroke='{color}' stroke-width='2'{dash} points='{path}'/>")
        if len(s) <= 40:
            for x, y in s:
                xl = x_labels[int(x)] if x_labels else f"{x:g}"
                body.append(f"<circle cx='{X(x):.1f}' cy='{Y(y):.1f}' r='3' fill='{color}'>"
                            f"<title>{_e(name)}: {_e(x_label)} {_e(xl)}, {y:.4f}</title></circle>")
    legend, lh = _legend([n for n, _ in series], width, height + 4)
    return _svg(width, height + 4 + lh, title, body + legend)


def bar_chart(categories: list[str], series: list[tuple[str, list[float | None]]], *, title: str, x_label: str,
              y_label: str, width: int = 560, height: int = 300, notes: list[str] | None = None) -> str:
    """Grouped bars: one group per category, one bar per series. ``notes``: a second label line per category."""
    vals = [v for _, s in series for v in s if v is not None and math.isfinite(v)]
    if not vals or not categories:
        return ""
    plot_bottom = height - _BOTTOM
    yt = nice_ticks(0.0, max(vals))
    y_hi = yt[-1] if yt[-1] > 0 else 1.0
    pw, ph = width - _LEFT - _RIGHT, plot_bottom - _TOP

    def Y(y):
        return _TOP + (1 - y / y_hi) * ph

    body = _frame(width, plot_bottom, title, y_label, x_label, yt, Y, x_label_dy=40 if notes else 32)
    gw = pw / len(categories)
    bw = gw * 0.8 / max(len(series), 1)
    for c, cat in enumerate(categories):
        cx = _LEFT + gw * (c + 0.5)
        body.append(f"<text x='{cx:.1f}' y='{plot_bottom + 14}' font-size='10' text-anchor='middle' fill='#555'>{_e(cat)}</text>")
        if notes:
            body.append(f"<text x='{cx:.1f}' y='{plot_bottom + 25}' font-size='9' text-anchor='middle' fill='#888'>{_e(notes[c])}</text>")
        for i, (name, s) in enumerate(series):
            v = s[c] if c < len(s) else None
            if v is None or not math.isfinite(v):
                continue
            color, _ = _style(i)
            x = _LEFT + gw * c + gw * 0.1 + bw * i
            body.append(f"<rect class='bar' x='{x:.1f}' y='{Y(v):.1f}' width='{max(bw - 1, 1):.1f}' height='{Y(0) - Y(v):.1f}' "
                        f"fill='{color}'><title>{_e(name)}: {_e(x_label)} {_e(cat)}, {v:.4f}</title></rect>")
    pad = 10 if notes else 4
    legend, lh = _legend([n for n, _ in series], width, height + pad, marker="box")
    return _svg(width, height + pad + lh, title, body + legend)
