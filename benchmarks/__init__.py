"""keysafe's benchmarks; `benchmarks/run.py` runs them all (see RESULTS.md)."""
