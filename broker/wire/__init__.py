"""Pure codecs: Kafka's record batches and client protocol. Imports no I/O module."""
