"""Where a runtime runs: one Target interface, one module per target (local processes, later Docker, KServe)."""
