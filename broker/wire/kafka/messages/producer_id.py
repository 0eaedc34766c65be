"""InitProducerId (key 22): served v0-v1 (flexible from v2); v1 is the same as v0.

A null transactional_id asks for an idempotent (non-transactional) producer id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import INT16, INT32, INT64, STRING, kf

__all__ = ["InitProducerIdRequest", "InitProducerIdResponse"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InitProducerIdRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.INIT_PRODUCER_ID
    transactional_id: str | None = kf(STRING, nullable="0+")
    transaction_timeout_ms: int = kf(INT32)


@dataclass(frozen=True, slots=True, kw_only=True)
class InitProducerIdResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.INIT_PRODUCER_ID
    throttle_time_ms: int = kf(INT32)
    error_code: int = kf(INT16)
    producer_id: int = kf(INT64, default=-1)
    producer_epoch: int = kf(INT16)
