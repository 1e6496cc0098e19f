"""Benchmark scripts: run each as ``python benchmarks/<script>.py`` from the repository root."""
