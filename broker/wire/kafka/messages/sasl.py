"""SASL: SaslHandshake (17) served v0-v1, SaslAuthenticate (36) served v0-v1.

SaslHandshake v0: raw SASL tokens follow on the socket without Kafka framing; v1: tokens travel
in SaslAuthenticate requests. SaslAuthenticate v1 adds session_lifetime_ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import BYTES, INT16, INT64, STRING, ArrayOf, kf

__all__ = [
    "SaslHandshakeRequest",
    "SaslHandshakeResponse",
    "SaslAuthenticateRequest",
    "SaslAuthenticateResponse",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslHandshakeRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.SASL_HANDSHAKE
    mechanism: str = kf(STRING)


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslHandshakeResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.SASL_HANDSHAKE
    error_code: int = kf(INT16)
    mechanisms: Sequence[str] = kf(ArrayOf(STRING))


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslAuthenticateRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.SASL_AUTHENTICATE
    auth_bytes: bytes = kf(BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslAuthenticateResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.SASL_AUTHENTICATE
    error_code: int = kf(INT16)
    error_message: str | None = kf(STRING, nullable="0+")
    auth_bytes: bytes = kf(BYTES)
    session_lifetime_ms: int = kf(INT64, "1+", default=0)
