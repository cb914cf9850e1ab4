"""Reference models: training (catalog), MLflow logging and local copies (registry)."""
