"""Protocol bounds shared by the broker and the clients (bytes unless the name says otherwise)."""

from __future__ import annotations

__all__ = [
    "REQUEST_BYTES_MAX",
    "BATCH_BYTES_MAX",
    "ARRAY_LENGTH_MAX",
    "STRING_BYTES_MAX",
    "INFLIGHT_REQUESTS_MAX",
]

REQUEST_BYTES_MAX = 100 << 20  # Kafka's socket.request.max.bytes default (104857600)
BATCH_BYTES_MAX = 1 << 20  # Kafka's message.max.bytes default is 1048588; one batch at most
ARRAY_LENGTH_MAX = 1 << 20  # elements in one decoded array: bounds memory before allocation
STRING_BYTES_MAX = 1 << 15  # an int16-length string cannot exceed 32767 bytes
INFLIGHT_REQUESTS_MAX = 64  # unanswered requests per client connection before reads pause
