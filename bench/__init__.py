"""Benchmarks behind `make bench`; results go into docs/benchmarks.md."""
