"""What can go wrong talking to a cluster, as typed exceptions.

Two families, kept apart because callers react differently:

- `KafkaError` (from broker.wire.errors): a broker answered with a Kafka error code. The client
  never invents a response; it raises KafkaError when an operation's answer carries an error
  (`check_error`), with the broker's message when it sent one.
- `ClientError` and its subclasses: no usable answer came back (cannot connect, the connection
  dropped, the answer is late or malformed, the client is closed, the broker lacks an API
  version we speak). The codec's RemoteProtocolError is converted to BrokerProtocolError at
  the connection, so callers of this package see only these two families.

Both carry `.retriable`: True when trying again later, after a metadata refresh, may succeed.
"""

from __future__ import annotations

from broker.wire.errors import ErrorCode, KafkaError

__all__ = [
    "ClientError",
    "ClientClosedError",
    "ClientConfigError",
    "KafkaConnectionError",
    "RequestTimedOutError",
    "NoBrokersAvailableError",
    "UnknownNodeError",
    "IncompatibleBrokerError",
    "BrokerProtocolError",
    "KafkaError",
    "ErrorCode",
    "error_code",
    "check_error",
]


class ClientError(Exception):
    """No usable answer from the cluster. Subclasses say why."""

    retriable: bool = False


class ClientClosedError(ClientError):
    """The client (or connection) was closed while, or before, the operation ran."""


class ClientConfigError(ClientError, ValueError):
    """A client option is out of range or malformed (e.g. a bootstrap address without port)."""


class KafkaConnectionError(ClientError):
    """Connecting to a broker failed, or the connection was lost with the request in flight
    (the broker may or may not have acted on it)."""

    retriable = True


class RequestTimedOutError(ClientError):
    """No answer within the request timeout. The connection it was sent on is closed, as
    Kafka's Java client does, so a hung broker is dropped rather than queued behind."""

    retriable = True


class NoBrokersAvailableError(KafkaConnectionError):
    """None of the bootstrap servers (or known brokers) could be reached."""


class UnknownNodeError(ClientError):
    """A node id that the current metadata does not list (it may have died or not registered
    yet): refresh metadata and retry."""

    retriable = True


class IncompatibleBrokerError(ClientError):
    """The broker does not serve any version of an API that we also speak."""

    def __init__(self, message: str, *, api_key: int) -> None:
        super().__init__(message)
        self.api_key = api_key


class BrokerProtocolError(ClientError):
    """The broker sent bytes that break Kafka's protocol (an undecodable response, a frame size
    out of bounds, an answer out of order). The connection is closed; `__cause__` holds the
    codec's RemoteProtocolError with the byte offset."""


def error_code(value: int) -> ErrorCode:
    """An error code from the wire as an ErrorCode; codes we do not know (a newer broker)
    become UNKNOWN_SERVER_ERROR rather than a ValueError."""
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR


def check_error(value: int, message: str | None = None) -> None:
    """Raise KafkaError for a non-zero error code from a response; `message` is the broker's
    error message or our description of what failed."""
    if value != ErrorCode.NONE:
        raise KafkaError(error_code(value), message or "")
