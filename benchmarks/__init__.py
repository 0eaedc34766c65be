"""raftlog benchmarks: programs that print figures."""
