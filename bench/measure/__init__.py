"""Measuring: bench run's orchestrator, one cell, capacity search, parity, check and calibration."""
