"""raftlog broker: transport."""
