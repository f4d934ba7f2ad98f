"""Benchmarks: every reference layer beside its public peer, same workloads, one run.

``python -m bench`` (or ``--quick`` for a smoke check). Figures are reported as ratios to the
peer of the same kind; speed is measured here, never asserted in tests.
"""
