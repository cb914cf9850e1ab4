"""The raw sample format: one row per scheduled request, as the generator records it and samples/*.parquet
keeps it (plus in_window, written by the run: whether the request was scheduled inside the measured window).
"""

from __future__ import annotations

import pandas as pd

SAMPLE_COLUMNS = ["scheduled", "sent", "latency_ms", "service_ms", "status", "bytes", "worker"]
# Scheduled times are wall-clock floats (start + k / rate); a slot meant to sit exactly on the window's
# start must not fall out of it by a rounding error, so boundaries are compared with this tolerance.
BOUNDARY_TOLERANCE_S = 1e-6


def is_success(status: pd.Series) -> pd.Series:
    return (status >= 200) & (status < 300)
