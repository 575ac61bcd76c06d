"""Route Counter benchmarks: `make bench` (or `python bench/run.py [--quick]`)."""
