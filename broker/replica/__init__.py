"""raftlog broker: replica."""
