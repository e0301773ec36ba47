"""Benchmarks (``make bench``): results as a table on stdout and JSON in bench/results.json."""
