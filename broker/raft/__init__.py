"""raftlog broker: raft."""
