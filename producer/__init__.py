"""raftlog producer library."""
