"""Benchmarks and load: `make bench`, the microbenchmarks, the Locust load run."""
