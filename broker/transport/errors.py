"""Typed errors of the peer bus. Bad input from our caller raises these; bad input from the
network never raises: it is dropped and counted (see `broker.transport.stats`)."""

from __future__ import annotations

__all__ = ["TransportError", "TransportConfigError", "MessageError", "BindError"]


class TransportError(Exception):
    """Base class of every error the peer bus raises."""


class TransportConfigError(TransportError, ValueError):
    """A configuration value or a peer address is invalid; the message names it."""


class MessageError(TransportError, ValueError):
    """`PeerBus.send` was given frames it can never send (none, wrong type, too large)."""


class BindError(TransportError, OSError):
    """The bus could not bind its listen address (in use, or not a local address)."""
