"""Benchmarks: the Kneser-Ney baseline, the side-by-side comparison report, the speed benchmark."""
