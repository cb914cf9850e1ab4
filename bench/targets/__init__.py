"""Where a runtime runs: one Target interface and owned-resource registry; local, Docker, compose, KServe."""
