"""What the tests, the benchmarks and the load runs share: the process stack, polling, the
invariant check, the ALTCHA solver."""
