"""raftlog broker: client."""
