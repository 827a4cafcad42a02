"""A usage record as the billing service bills it: the same mapping and event ids as its follower of the
platform's database (src/platform/mapping.rs), checked against the same cases
(testdata/platform/mapping_cases.json)."""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, Mapping, Optional, Union

CALL_TYPES = ("phone_calls", "telephony_minutes")
WORD_TYPES = ("stt_words", "tts_words")
NOT_BILLED = ("tokens", "api_calls")
_BILLABLE_HINTS = ("word", "call", "stt", "tts", "phone", "telephon", "voice", "speech")


class UnbillableRecord(ValueError):
    """A record that cannot be billed as it is; `reason` is the follower's (`invalid_amount`, `unknown_type`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def record_event_id(record_id: str) -> str:
    return f"usage_records:{record_id}"


def call_event_id(call_id: str) -> str:
    return f"call:{call_id}"


def _whole_words(amount: Union[int, str, Decimal, float]) -> Optional[int]:
    if isinstance(amount, bool):
        return None
    try:
        d = Decimal(str(amount))
    except InvalidOperation:
        return None
    if not d.is_finite() or d < 0 or d != d.to_integral_value():
        return None
    return int(d)


def _rfc3339(t: _dt.datetime) -> str:
    if t.tzinfo is None:
        # The platform's columns are timestamptz; a naive time is taken as UTC.
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def usage_event(
    tenant_id: str,
    usage_type: str,
    amount: Union[int, str, Decimal, float],
    record_id: str,
    occurred_at: Optional[_dt.datetime] = None,
    call_id: Optional[str] = None,
    metadata: Optional[Mapping[str, Any]] = None,
) -> Optional[Dict[str, Any]]:
    """The event `POST /api/usage/events` takes for a usage record, or None when it is not billed.

    Raises `UnbillableRecord` for a record the follower would hold back (fractional words, an unknown type
    whose name says it may be billable).
    """
    event: Dict[str, Any] = {"tenant_id": str(tenant_id)}
    extra: Dict[str, Any] = dict(metadata or {})
    if usage_type in WORD_TYPES:
        words = _whole_words(amount)
        if words is None:
            raise UnbillableRecord(
                "invalid_amount", f"{usage_type} amount {amount} is not a whole number of words"
            )
        if words == 0:
            return None
        event.update(event_id=record_event_id(str(record_id)), type=usage_type, quantity=words)
    elif usage_type in CALL_TYPES:
        event_id = call_event_id(str(call_id)) if call_id else record_event_id(str(record_id))
        event.update(event_id=event_id, type="phone_calls", quantity=1)
        extra = {"usage_record_id": str(record_id), "usage_type": usage_type, **extra}
    elif usage_type in NOT_BILLED or not any(h in usage_type.lower() for h in _BILLABLE_HINTS):
        return None
    else:
        raise UnbillableRecord(
            "unknown_type",
            f"usage type {usage_type!r} is not one billed (stt_words, tts_words, phone_calls, "
            "telephony_minutes) but its name says it may be",
        )
    if occurred_at is not None:
        event["occurred_at"] = _rfc3339(occurred_at)
    if extra:
        event["metadata"] = extra
    return event
