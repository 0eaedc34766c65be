"""raftlog broker: storage."""
