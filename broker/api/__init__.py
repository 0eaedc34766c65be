"""raftlog broker: api."""
