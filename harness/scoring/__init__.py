"""pass@k and the metrics tables (pure)."""
