"""raftlog broker: controller.

records.py    the metadata log's records and their canonical encoding (pure)
metadata.py   MetadataState, the state machine every broker applies the log to, and the
              validation the controller leader runs before proposing (pure)
placement.py  where new partitions' replicas go and which leaderships to move back (pure)

This package's __init__ imports nothing, so importing a pure module pulls in no I/O.
"""
