"""raftlog broker: controller."""
