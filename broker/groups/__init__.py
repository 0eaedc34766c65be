"""Consumer groups: Kafka's group coordinator, with its state kept in `__consumer_offsets`.

    state.py        one group's membership as a pure state machine (every transition)
    records.py      the records of `__consumer_offsets` (Kafka's formats), pure
    keys.py         which offsets partition coordinates a group (Kafka's hash), pure
    coordinator.py  the glue: loading partitions at leadership, writes through Raft, timers
    api.py          Kafka's group APIs (request body in, response body out)
"""

from broker.groups.coordinator import GroupCoordinator

__all__ = ["GroupCoordinator"]
