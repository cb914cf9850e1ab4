"""servebench: benchmark and evaluation harness for ML model serving runtimes."""

__version__ = "0.1.0"
