"""Integration tests: real broker processes on 127.0.0.1, driven through the command line, Kafka
clients (kafka-python) and hand-built Kafka requests. `cluster.py` is the process harness."""
