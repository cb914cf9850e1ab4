"""Number formatting shared by the HTML report and the Markdown summary, so both read the same.

Latencies keep about three significant figures (the samples are microsecond-resolution; Locust-style whole
milliseconds would hide the differences the report exists to show). A missing value prints as a dash.
"""

from __future__ import annotations

import math

DASH = "\u2013"  # en dash: a missing value, and the separator of a range


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_ms(value: float | None, unit: bool = True) -> str:
    if _missing(value):
        return DASH
    assert value is not None
    size = abs(value)
    digits = 3 if size < 1 else 2 if size < 10 else 1 if size < 100 else 0
    text = f"{value:,.{digits}f}"
    return f"{text} ms" if unit else text


def fmt_ci(low: float | None, high: float | None) -> str:
    if _missing(low) or _missing(high):
        return ""
    return f"{fmt_ms(low, unit=False)}{DASH}{fmt_ms(high, unit=False)}"


def fmt_rate(value: float | None, unit: str = "/s") -> str:
    if _missing(value):
        return DASH
    assert value is not None
    return f"{value:,.1f}{unit}"


def fmt_percent(value: float | None, digits: int = 1) -> str:
    if _missing(value):
        return DASH
    assert value is not None
    return f"{value:.{digits}f}%"


def fmt_ratio(value: float | None) -> str:
    """An error rate (a fraction) as a percentage; tiny non-zero rates stay visible."""
    if _missing(value):
        return DASH
    assert value is not None
    if value == 0:
        return "0%"
    return f"{value:.2%}" if value >= 0.0001 else "<0.01%"


def fmt_number(value: float | None, digits: int = 1, unit: str = "") -> str:
    if _missing(value):
        return DASH
    assert value is not None
    return f"{value:,.{digits}f}{unit}"


def cost_per_million(price_per_core_hour: float | None, cores: int, capacity_rps: float | None) -> float | None:
    """What a million predictions cost when the server's cores are paid for and serve at capacity."""
    if price_per_core_hour is None or not capacity_rps or cores < 1:
        return None
    return price_per_core_hour * cores / (capacity_rps * 3600.0) * 1_000_000


def fmt_cost(value: float | None) -> str:
    return DASH if _missing(value) else f"{value:.3g} per million"
