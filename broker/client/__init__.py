"""raftlog's asyncio cluster client, shared by `producer`, `consumer` and the admin client.

    ClusterClient     connections, metadata cache and request routing (broker.client.cluster)
    AdminClient       topic and cluster administration, blocking (AsyncAdminClient: asyncio)
    BrokerConnection  one connection to one broker (broker.client.connection)
    ClusterMetadata   the metadata cache as a state object with no I/O
    LoopThread        a private event loop in a thread, for sync facades

Speaks only Kafka's protocol (broker.wire.kafka), plus raftlog's private APIs where a broker
advertises them; imports no server code.
"""

from broker.client.admin import AdminClient, AsyncAdminClient
from broker.client.cluster import ClusterClient
from broker.client.config import Address, ClientConfig, parse_address, parse_bootstrap
from broker.client.connection import BrokerConnection
from broker.client.descriptions import (
    BrokerDescription,
    ClusterDescription,
    ClusterPartition,
    PartitionDescription,
    TopicDescription,
    TopicListing,
)
from broker.client.errors import (
    BrokerProtocolError,
    ClientClosedError,
    ClientConfigError,
    ClientError,
    IncompatibleBrokerError,
    KafkaConnectionError,
    KafkaError,
    NoBrokersAvailableError,
    RequestTimedOutError,
    UnknownNodeError,
    check_error,
    error_code,
)
from broker.client.loop_thread import LoopThread
from broker.client.metadata import (
    BrokerMetadata,
    ClusterMetadata,
    PartitionMetadata,
    TopicMetadata,
)

__all__ = [
    "AdminClient",
    "AsyncAdminClient",
    "ClusterClient",
    "BrokerConnection",
    "Address",
    "ClientConfig",
    "parse_address",
    "parse_bootstrap",
    "ClusterMetadata",
    "BrokerMetadata",
    "PartitionMetadata",
    "TopicMetadata",
    "TopicListing",
    "TopicDescription",
    "PartitionDescription",
    "ClusterDescription",
    "BrokerDescription",
    "ClusterPartition",
    "LoopThread",
    "ClientError",
    "ClientClosedError",
    "ClientConfigError",
    "KafkaConnectionError",
    "NoBrokersAvailableError",
    "RequestTimedOutError",
    "UnknownNodeError",
    "IncompatibleBrokerError",
    "BrokerProtocolError",
    "KafkaError",
    "check_error",
    "error_code",
]
