"""raftlog broker: the ZeroMQ peer bus between broker nodes (bytes and node ids, no Raft).

`PeerBus` sends opaque multi-frame messages to peer nodes, batching per peer per event-loop
turn into one envelope (`frames` is the envelope codec), and delivers what peers send.
"""

from broker.transport.bus import MessageHandler, PeerBus, UnreachableHandler
from broker.transport.config import TransportConfig
from broker.transport.errors import BindError, MessageError, TransportConfigError, TransportError
from broker.transport.stats import DropReason

__all__ = [
    "PeerBus",
    "TransportConfig",
    "MessageHandler",
    "UnreachableHandler",
    "DropReason",
    "TransportError",
    "TransportConfigError",
    "MessageError",
    "BindError",
]
