"""Time-ordered UUIDs (version 7), so primary keys sort by creation for cursor pagination.

Random bits alone would order ids made in the same millisecond arbitrarily (the audit
log's "newest first" would then be wrong for events of one transaction), so the 12-bit
``rand_a`` field holds a counter within the millisecond (RFC 9562, section 6.2, method
1). Ids are strictly increasing within a process; across processes, by millisecond.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_millis = 0
_last_counter = 0
_COUNTER_MAX = 0xFFF


def _next_timestamp_and_counter() -> tuple[int, int]:
    global _last_millis, _last_counter
    with _lock:
        millis = time.time_ns() // 1_000_000
        if millis > _last_millis:
            # A random start in the lower half keeps ids unguessable yet leaves room
            # for at least 2048 more ids in this millisecond.
            counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            # Same millisecond, or the clock stepped back: continue after the last id.
            millis, counter = _last_millis, _last_counter + 1
            if counter > _COUNTER_MAX:
                millis, counter = millis + 1, 0
        _last_millis, _last_counter = millis, counter
        return millis, counter


def uuid7() -> uuid.UUID:
    millis, counter = _next_timestamp_and_counter()
    rand = int.from_bytes(os.urandom(8), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)
