"""Where replicas and leaders go (pure and deterministic: same input, same output).

Placement (`assign_replicas`) first fixes how many preferred leaderships and replicas of the
new topic each broker takes: the even share, plus one for the brokers that carry least
already, so every topic is spread over all brokers within one (a topic piled onto a newly added,
empty broker would put all its load there) while the remainders even out the cluster. It then
fills the partitions one by one to meet those counts exactly, leaders going round a ring that
starts one step further for each partition and followers picked from a point after the leader
that shifts each lap, as in Kafka's rack-unaware assignment, so that one broker's followers are
not always the same brokers. On an empty cluster every broker ends with the same number of
preferred leaderships and of replicas within one; cluster-wide preferred-leader counts that were
within one stay within one after any topic is added.

Leadership (`leader_balance_moves`): Raft elects whoever it elects; the controller leader then
transfers leadership back to each partition's preferred leader when that broker is alive, and
spreads the partitions whose preferred leader is down evenly over their live replicas.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from broker.controller.metadata import (
    CONSUMER_OFFSETS_TOPIC,
    MetadataError,
    MetadataState,
    validate_create_topic,
    validate_new_topic_name,
    validate_replica_assignment,
    validate_topic_configs,
)
from broker.controller.records import CreateTopic, PartitionAssignment
from broker.wire.errors import ErrorCode

__all__ = [
    "CONSUMER_OFFSETS_PARTITIONS",
    "CONSUMER_OFFSETS_REPLICATION_FACTOR",
    "CONSUMER_OFFSETS_CONFIGS",
    "LEADER_MOVES_MAX",
    "PlacementError",
    "BrokerLoad",
    "assign_replicas",
    "broker_load",
    "create_topic_record",
    "consumer_offsets_record",
    "leader_balance_moves",
]

# Kafka uses 50 offsets partitions; Redpanda uses 16, which suits a few brokers better: every
# partition is a Raft group, and the count only sets how many coordinators groups are hashed to.
CONSUMER_OFFSETS_PARTITIONS: Final = 16
CONSUMER_OFFSETS_REPLICATION_FACTOR: Final = 3  # lowered to the live brokers when fewer
# Kafka compacts this topic; without compaction, committed offsets and group records are kept
# by never deleting by age.
CONSUMER_OFFSETS_CONFIGS: Final[Mapping[str, str]] = MappingProxyType({
    "retention.ms": "-1",
    "segment.bytes": str(100 << 20),
})
LEADER_MOVES_MAX: Final = 8  # leadership transfers suggested per call


class PlacementError(ValueError):
    """Placement asked of an impossible shape (validation should have refused it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerLoad:
    """What the brokers carry already. Brokers missing from a mapping carry nothing."""

    replicas: Mapping[int, int] = field(default_factory=dict)  # node -> replicas held
    leaders: Mapping[int, int] = field(default_factory=dict)  # node -> preferred leaderships


def broker_load(state: MetadataState) -> BrokerLoad:
    """The replicas and preferred leaderships each node holds in `state`."""
    replicas: dict[int, int] = {}
    leaders: dict[int, int] = {}
    for info in state.partitions():
        leaders[info.preferred_leader] = leaders.get(info.preferred_leader, 0) + 1
        for node in info.replicas:
            replicas[node] = replicas.get(node, 0) + 1
    return BrokerLoad(replicas=replicas, leaders=leaders)


def assign_replicas(
    *,
    brokers: Sequence[int],
    partitions: int,
    replication_factor: int,
    load: BrokerLoad | None = None,
    rotation: int = 0,
) -> tuple[tuple[int, ...], ...]:
    """Replicas for partitions 0..partitions-1 over `brokers` (distinct node ids; order does not
    matter), the first of each being its preferred leader. `rotation` turns the ring that breaks
    ties between equally loaded brokers (e.g. a hash of the topic name)."""
    ring = sorted(set(brokers))
    if len(ring) != len(brokers) or not ring:
        raise PlacementError(f"brokers must be distinct and not empty: {list(brokers)}")
    if not 1 <= replication_factor <= len(ring):
        raise PlacementError(
            f"replication factor {replication_factor} not in 1..{len(ring)} (the brokers)")
    if partitions < 1:
        raise PlacementError(f"partitions must be at least 1, got {partitions}")
    leaders, replicas = _targets(ring, partitions, replication_factor, load or BrokerLoad(),
                                 rotation)
    return _realize(ring, partitions, replication_factor, leaders, replicas, rotation)


def _targets(
    ring: list[int], partitions: int, factor: int, load: BrokerLoad, rotation: int
) -> tuple[dict[int, int], dict[int, int]]:
    """How many preferred leaderships and replicas of the new topic each broker gets: the even
    share, the remainder going to the brokers carrying least (leaders first, since leaders do
    the work). A broker given an extra leadership on a topic too small to give every broker a
    replica must get an extra replica too; otherwise replica extras go to the brokers holding
    fewest replicas, and among those to the ones leading most, so that brokers light on
    leaderships stay light on replicas and can take the next topic's extra leaders."""
    n = len(ring)
    tie = {b: (i - rotation) % n for i, b in enumerate(ring)}
    led = {b: load.leaders.get(b, 0) for b in ring}
    held = {b: load.replicas.get(b, 0) for b in ring}
    share, extra = divmod(partitions, n)
    lucky = set(sorted(ring, key=lambda b: (led[b], held[b], tie[b]))[:extra])
    leaders = {b: share + (b in lucky) for b in ring}
    share, extra = divmod(partitions * factor, n)
    lucky = set(sorted(ring, key=lambda b: (
        leaders[b] <= share, held[b], -(led[b] + leaders[b]), tie[b]))[:extra])
    replicas = {b: share + (b in lucky) for b in ring}
    assert all(leaders[b] <= replicas[b] <= partitions for b in ring)
    return leaders, replicas


def _realize(
    ring: list[int], partitions: int, factor: int, leaders: dict[int, int],
    replicas: dict[int, int], rotation: int,
) -> tuple[tuple[int, ...], ...]:
    """Rows (partitions) meeting the per-broker targets exactly. With r rows left, invariant
    leaders_left[b] <= replicas_left[b] <= r for every b. It holds after a row that takes as
    leader the broker that must lead every remaining row (if any, else any broker with
    leaderships left), and as followers every broker that must be in every remaining row, then
    others whose replicas left exceed their leaderships left; counting shows such a row always
    exists. Among the free choices, leaders go round the ring and followers are taken from a
    point after the leader that shifts each lap, as Kafka's assignment does."""
    n = len(ring)
    position = {b: i for i, b in enumerate(ring)}
    lead_left, hold_left = dict(leaders), dict(replicas)
    result: list[tuple[int, ...]] = []
    for p in range(partitions):
        rows = partitions - p
        start = (rotation + p) % n
        leader = max((b for b in ring if lead_left[b] > 0), key=lambda b: (
            lead_left[b] == rows, hold_left[b] == rows, lead_left[b], -((position[b] - start) % n)))
        origin = position[leader] + 1 + (p // n) % max(1, n - 1)
        followers = sorted(
            (b for b in ring if b != leader and hold_left[b] > lead_left[b]),
            key=lambda b: (hold_left[b] != rows, lead_left[b] - hold_left[b],
                           (position[b] - origin) % n),
        )[: factor - 1]
        row = (leader, *followers)
        assert len(row) == factor, (row, lead_left, hold_left)
        lead_left[leader] -= 1
        for b in row:
            hold_left[b] -= 1
        result.append(row)
    assert not any(lead_left.values()) and not any(hold_left.values())
    return tuple(result)


def _rotation(name: str) -> int:
    # a stable (not per-process salted) hash, so every node would place alike
    return sum((i + 1) * ord(c) for i, c in enumerate(name))


def create_topic_record(
    state: MetadataState,
    *,
    name: str,
    topic_id: str,
    partitions: int,
    replication_factor: int,
    configs: Mapping[str, str] | None = None,
    assignments: Sequence[Sequence[int]] | None = None,
    internal: bool = False,
) -> CreateTopic:
    """Validates a topic creation and places it over the live brokers, balanced against what
    they already carry; or takes the caller's `assignments` (replicas per partition), in which
    case `partitions` and `replication_factor` are ignored. Raises MetadataError. `topic_id` is
    the caller's fresh UUID as 32 lowercase hex digits (uuid4().hex): randomness stays outside."""
    if assignments is not None:
        validate_new_topic_name(state, name, internal=internal)
        placed = validate_replica_assignment(state, assignments)
        pairs = validate_topic_configs(configs or {})
        config = tuple((k, v) for k, v in pairs if v is not None)
    else:
        config = validate_create_topic(state, name=name, partitions=partitions,
                                       replication_factor=replication_factor, configs=configs,
                                       internal=internal)
        placed = assign_replicas(brokers=state.live_brokers(), partitions=partitions,
                                 replication_factor=replication_factor,
                                 load=broker_load(state), rotation=_rotation(name))
    return CreateTopic(
        name=name,
        topic_id=topic_id,
        partitions=tuple(
            PartitionAssignment(partition=i, replicas=r) for i, r in enumerate(placed)),
        configs=config,
    )


def consumer_offsets_record(
    state: MetadataState,
    *,
    topic_id: str,
    partitions: int = CONSUMER_OFFSETS_PARTITIONS,
    replication_factor: int = CONSUMER_OFFSETS_REPLICATION_FACTOR,
    configs: Mapping[str, str] | None = None,
) -> CreateTopic:
    """The record creating `__consumer_offsets`. Its replication factor is lowered to the number
    of live brokers when there are fewer, so that a one- or two-broker cluster has consumer
    groups at once (Kafka instead refuses to create it until enough brokers are up)."""
    live = len(state.live_brokers())
    if live == 0:
        raise MetadataError(ErrorCode.INVALID_REPLICATION_FACTOR,
                            "replication factor 1 is larger than the number of live brokers (0)")
    return create_topic_record(
        state, name=CONSUMER_OFFSETS_TOPIC, topic_id=topic_id, partitions=partitions,
        replication_factor=min(replication_factor, live),
        configs=CONSUMER_OFFSETS_CONFIGS if configs is None else configs, internal=True,
    )


def leader_balance_moves(
    state: MetadataState,
    current_leaders: Mapping[int, int],
    alive: Collection[int],
    *,
    moves_max: int = LEADER_MOVES_MAX,
) -> list[tuple[int, int]]:
    """Leadership transfers (group id, target node) that bring leadership back to balance: each
    group to its preferred leader when that one is alive, and groups whose preferred leader is
    down spread evenly over their live replicas. Groups with no known or no live current leader
    are left to Raft's election. At most `moves_max`, taken from the most loaded leaders first."""
    live = set(alive)
    desired = _desired_leaders(state, current_leaders, live)
    led = dict.fromkeys(live, 0)
    pending: dict[int, list[tuple[int, int]]] = {}
    for group_id, target in sorted(desired.items()):
        current = current_leaders[group_id]
        led[current] += 1
        if target != current:
            pending.setdefault(current, []).append((group_id, target))
    moves: list[tuple[int, int]] = []
    while pending and len(moves) < moves_max:
        source = max(pending, key=lambda n: (led[n], -n))
        group_id, target = pending[source].pop(0)
        if not pending[source]:
            del pending[source]
        led[source] -= 1
        led[target] += 1
        moves.append((group_id, target))
    return moves


def _desired_leaders(
    state: MetadataState, current_leaders: Mapping[int, int], live: set[int]
) -> dict[int, int]:
    """Group id -> the node that should lead it, for groups whose current leader is live."""
    desired: dict[int, int] = {}
    orphans = []  # groups whose preferred leader is down
    for info in state.partitions():
        current = current_leaders.get(info.group_id)
        if current not in live or current not in info.replicas:
            continue  # no leader to move, or a membership change in flight: not ours to touch
        if info.preferred_leader in live:
            desired[info.group_id] = info.preferred_leader
        else:
            orphans.append(info)
    counts = dict.fromkeys(live, 0)
    for node in desired.values():
        counts[node] += 1
    for info in orphans:
        current = current_leaders[info.group_id]
        candidates = [n for n in info.replicas if n in live]
        least = min(counts[n] for n in candidates)
        # stay put when the current leader is among the least loaded: no needless transfer
        target = current if counts[current] == least else min(
            candidates, key=lambda n: (counts[n], info.replicas.index(n)))
        desired[info.group_id] = target
        counts[target] += 1
    return desired
