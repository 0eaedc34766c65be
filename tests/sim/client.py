"""Clients: each proposes unique values, one at a time, to the node it believes leads its group.

A client proposes a value to its guess of the leader. Dropped (not leader, node down or paused):
it takes the node's leader hint, or a random member, and retries soon. Accepted: it waits for
that node to apply the value, which is the acknowledgement (the value is committed at the index
it was applied at, and the checker holds the cluster to it forever); on timeout it re-proposes
the same value, possibly elsewhere, so a value may sit in the log more than once.
"""

from __future__ import annotations

import random
from typing import Protocol

from broker.raft.messages import Entry, ProposeResult
from tests.sim.checker import Checker
from tests.sim.events import CLIENT, EventQueue

__all__ = ["Client", "ClientPool"]


class Proposer(Protocol):
    def propose_at(self, node: int, group: int, value: bytes) -> tuple[ProposeResult, int]:
        """Propose on `node`: (result, that node's leader hint); DROPPED if it is down."""
        ...


class Client:
    __slots__ = ("group", "index", "seq", "value", "target", "attempt", "waiting_on", "acked")

    def __init__(self, group: int, index: int, target: int) -> None:
        self.group = group
        self.index = index
        self.seq = 0  # values proposed so far
        self.value: bytes | None = None  # the value being proposed, until acknowledged
        self.target = target  # the node believed to lead
        self.attempt = 0  # bumped on every state change: stale timer events are ignored
        self.waiting_on = 0  # the node that accepted the latest proposal of `value`
        self.acked = 0


class ClientPool:
    __slots__ = (
        "_queue", "_proposer", "_checker", "_rng", "_members", "_clients", "_pending",
        "_think_us_max", "_retry_us", "_ack_timeout_us", "stopping", "proposals",
    )

    def __init__(
        self,
        *,
        queue: EventQueue,
        proposer: Proposer,
        checker: Checker,
        rng: random.Random,
        members: tuple[tuple[int, ...], ...],
        per_group: int,
        think_us_max: int,
        retry_us: int,
        ack_timeout_us: int,
    ) -> None:
        self._queue = queue
        self._proposer = proposer
        self._checker = checker
        self._rng = rng
        self._members = members  # per group, its nodes
        self._clients = [
            [Client(g, i, rng.choice(members[g])) for i in range(per_group)]
            for g in range(len(members))
        ]
        self._pending: list[dict[bytes, Client]] = [{} for _ in members]  # value -> its client
        self._think_us_max = think_us_max
        self._retry_us = retry_us
        self._ack_timeout_us = ack_timeout_us
        self.stopping = False  # healing phase: finish pending values, start no new ones
        self.proposals = 0

    def start(self) -> None:
        for clients in self._clients:
            for c in clients:
                self._schedule(c, self._rng.randrange(self._think_us_max))

    def on_event(self, group: int, index: int, attempt: int) -> None:
        c = self._clients[group][index]
        if attempt != c.attempt:
            return  # acknowledged (or re-proposed) since this timer was set
        if c.value is None:
            if self.stopping:
                return
            c.seq += 1
            c.value = b"g%d/c%d/v%d" % (group, index, c.seq)
            self._pending[group][c.value] = c
        self.proposals += 1
        result, hint = self._proposer.propose_at(c.target, group, c.value)
        if result is ProposeResult.ACCEPTED:
            c.waiting_on = c.target
            self._schedule(c, self._ack_timeout_us)
            return
        c.waiting_on = 0
        members = self._members[group]
        c.target = hint if hint and hint != c.target else self._rng.choice(members)
        self._schedule(c, self._retry_us)

    def on_applied(self, group: int, node: int, entry: Entry) -> None:
        """`node` applied a data entry: the acknowledgement, if a client awaits it from there."""
        c = self._pending[group].get(entry.data)
        if c is None or c.waiting_on != node:
            return
        del self._pending[group][entry.data]
        self._checker.acked(group, entry.data, entry.index)
        c.value = None
        c.waiting_on = 0
        c.acked += 1
        self._schedule(c, self._rng.randrange(self._think_us_max))

    def idle(self) -> bool:
        """No value is waiting to be acknowledged."""
        return not any(self._pending)

    def pending_values(self) -> list[bytes]:
        return [v for pending in self._pending for v in pending]

    def _schedule(self, c: Client, delay_us: int) -> None:
        c.attempt += 1
        self._queue.push(self._queue.now_us + delay_us, CLIENT, c.group, c.index, c.attempt)
