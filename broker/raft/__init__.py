"""raftlog broker: raft. A sans-IO Raft core (`core.RaftNode`), its vocabulary (`messages`) and
the storage interface it reads (`storage`)."""

from broker.raft.confchange import ConfChangeError, decode_conf_change, encode_conf_change
from broker.raft.core import (
    NoHardStateError,
    RaftConfig,
    RaftConfigError,
    RaftError,
    RaftNode,
    RandomSource,
    StorageStateError,
)
from broker.raft.progress import Progress, ProgressState

__all__ = [
    "RaftNode",
    "RaftConfig",
    "RandomSource",
    "RaftError",
    "RaftConfigError",
    "NoHardStateError",
    "StorageStateError",
    "ConfChangeError",
    "encode_conf_change",
    "decode_conf_change",
    "Progress",
    "ProgressState",
]
