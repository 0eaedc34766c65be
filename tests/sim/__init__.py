"""The deterministic simulator for the Raft core (`broker.raft`).

What it is
----------
A seeded, single-threaded simulation of a cluster of N nodes (3 or 5), each running the real
`RaftNode` for several Raft groups at once. Each node owns one simulated disk shared by its
groups (one sync makes every group on the node durable, as a broker's group commit does) and
one network link to every peer shared by its groups. Time is simulated (integer microseconds),
driven by a priority queue of events: node ticks (a fixed interval skewed per node, with
jitter), message deliveries, sync completions, client proposals and fault injections. The same
seed replays the same run, event for event.

Faults (swarm testing: each seed enables a random subset with random intensities; faults.py):
message drop, duplication and extra delay (which reorders), symmetric and one-way partitions
that heal, partitions and crashes aimed at current leaders, node crash and restart (everything
not synced is lost; a torn crash keeps a prefix of the unsynced writes), slow disks (a sync
takes simulated time; vote and append responses wait for it), node pauses (as SIGSTOP or a GC
pause), leadership transfers, retention (a node deletes a prefix of its applied log, so lagging
peers are moved to its log start), on 5 nodes, single-server membership changes (every
node hosts every group; a removed node's replica is deleted and its id never re-added), damage
found on restart (a synced suffix cut and marked for repair) and, only when forced with
`--faults cut-tail`, a synced suffix lost unnoticed (storage takes it for a torn write; the
leader tells the replica with a RepairMark, and a loss no leader learns of in time is a window
no protocol closes, so those runs' failures need reading: FINDINGS.md).

Clients propose unique values to the node they believe leads, retry the same value on timeout,
and count a value acknowledged when the node that accepted it applies it.

What is checked (checker.py, node.py), after every event: Election Safety, Log Matching,
Leader Completeness, State Machine Safety, commit index monotonic per node while up, durable
term, vote and commit monotonic across restarts, no double vote in a term, entries applied in
order, every acknowledged value stays at its index, vote and append acknowledgements leave a
node only once what they promise is durable, applied entries are durable, and each node's own
`check_invariants()`. At every commit a leader makes, the stronger invariant Raft's safety
proof rests on: every log lacking the committed entry is less up to date than a quorum, so it
can never be elected (a broken commit rule fails this before any entry is actually lost). Whole
logs are cross-checked every K events and at the end. Liveness: after the fault phase
everything heals (partitions heal, crashed nodes restart, the network stops losing messages)
and every group must elect a leader, acknowledge every pending value and apply it on every node
within a bounded number of ticks.

How to run
----------
    python -m tests.sim --seeds 1000 --nodes 5 --groups 3 --steps 3000 --quiet
    python -m tests.sim --seeds 200 --start-seed 5000       # another range of seeds
    python -m pytest -q tests/sim                            # the CI share (500 seeds)
    python -m pytest -q --run-slow tests/sim                 # plus the longer runs

Options: `--seeds N`, `--start-seed S`, `--seed S` (one seed), `--steps N` (events per seed
with faults on; the healing phase adds more), `--nodes 3|5`, `--groups G`, `--quiet`,
`--faults KIND,...` (enable these fault kinds in every seed; the rest stay random),
`--time-limit-s T` (stop starting seeds after T seconds of wall time), `--broken-commit`
(self-test: a core whose commit rule also counts replicas of earlier terms, which the
simulator must catch: `--seeds 500 --nodes 3 --groups 1 --faults isolate-leader`). It
prints a summary (seeds, events, events/s, faults injected by kind, values acknowledged, the
slowest healing) and exits 1 if any seed failed, 2 on bad usage.

How to replay
-------------
A failing seed prints the property that broke, the seed's enabled faults, a tail of the event
trace (with notes saying what each fault did) and the exact command that replays it, e.g.

    python -m tests.sim --seed 1234 --steps 3000 --nodes 5 --groups 3

The same seed and options give the same run: every random choice comes from `random.Random`
instances seeded from the seed, events due at the same time run in the order they were
scheduled, nothing iterates a hash-ordered collection of strings or objects, and no wall clock
is read. Each run folds every event into a trace hash (printed per seed without `--quiet`);
tests check that two runs of a seed, even in processes with different hash seeds, agree on it.

Layout: scenario.py (what a seed decides), faults.py (the swarm fault plan), events.py (the
clock), network.py, disk.py (crash-modelling LogStorage, group commit), node.py (the driver:
persist, send, apply, advance), client.py, injector.py (faults at run time), cluster.py (the
event loop, healing, liveness), checker.py (the invariants), runner.py and __main__.py (CLI),
broken.py (the deliberately broken core), FINDINGS.md (bugs found in the core).
"""
