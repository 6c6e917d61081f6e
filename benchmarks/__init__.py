"""carerecord's benchmark suite; run it with ``python -m benchmarks`` (see benchmarks/run.py)."""
