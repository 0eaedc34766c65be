"""raftlog consumer library."""
