"""raftlog broker: wire/kafka."""
