"""The raw sample format: one row per scheduled request, as the generator records it and samples/*.parquet
keeps it (plus in_window, written by the run: whether the request was scheduled inside the measured window).

Every slot of the schedule that came due gets a row: a sent request with its HTTP status (0: no answer,
a reset or a timeout), or a dropped one (status DROPPED, no send time) that was still waiting for a free
connection when the run ended; its latency is the time from its schedule to that end, a lower bound.
`queued` marks a request that waited for a free connection (every one of max_in_flight was busy), so a
late send is blamed on the server rather than on the generator. Files written before `queued` existed
lack the column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas only types these helpers: the load generator's image imports this module without it
    import pandas as pd

SAMPLE_COLUMNS = ["scheduled", "sent", "latency_ms", "service_ms", "status", "bytes", "worker", "queued"]
# Every field but the send and service time, which a dropped request lacks: a line torn by a kill lacks
# the last field, so it is skipped rather than read with a truncated status.
REQUIRED_COLUMNS = ["scheduled", "latency_ms", "status", "bytes", "worker", "queued"]
DROPPED = -1  # status of a scheduled request that was never sent
# One row per SAMPLE_COLUMNS, as the generator writes it: times to the microsecond, durations to 0.1 us.
# %-formatting, once per request: 2 us against an f-string's 3.5 (2026-12-07).
SAMPLE_ROW = ",".join(("%.6f", "%.6f", "%.4f", "%.4f", "%d", "%d", "%d", "%d")) + "\n"
DROPPED_ROW = "%.6f,,%.4f,," + str(DROPPED) + ",0,%d,1\n"  # scheduled, latency, worker: never sent, so queued
# Scheduled times are wall-clock floats (start + k / rate); a slot meant to sit exactly on the window's
# start must not fall out of it by a rounding error, so boundaries are compared with this tolerance.
BOUNDARY_TOLERANCE_S = 1e-6


def is_success(status: pd.Series) -> pd.Series:
    return (status >= 200) & (status < 300)


def is_dropped(status: pd.Series) -> pd.Series:
    return status == DROPPED
