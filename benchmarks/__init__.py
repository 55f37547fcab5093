"""Benchmarks run by ``make bench``; shared helpers live in ``benchmarks.common``."""
