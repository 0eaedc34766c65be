"""`python -m broker` is the `raftlog` command."""

from broker.cli import main

raise SystemExit(main())
