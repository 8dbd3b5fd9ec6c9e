"""Small statistics for the verdict: a robust slope and relative change. Pure."""

from __future__ import annotations

from statistics import median


def theil_sen_slope(xs: list[float], ys: list[float]) -> float:
    """Median of pairwise slopes: one allocator spike or GC pause does not tilt the line."""
    slopes = [
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(len(xs))
        for j in range(i + 1, len(xs))
        if xs[j] != xs[i]
    ]
    return median(slopes) if slopes else 0.0


def relative_change(before: float, after: float) -> float:
    """(after − before) / before; 0 when there is no earlier figure to compare with."""
    return (after - before) / before if before else 0.0
