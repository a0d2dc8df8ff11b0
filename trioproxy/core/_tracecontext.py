"""W3C Trace Context: the ``traceparent`` request header, parsed strictly (pure).

https://www.w3.org/TR/trace-context/ section 3.2. The proxy takes no part in the trace (it
starts no span and changes neither header, which travel on unchanged as end-to-end fields);
it only reads the IDs so that its access line and diagnostics join the request's trace. A
value that does not parse is ignored, as the specification asks of a vendor that cannot
parse it: never an error for the request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["TRACEPARENT", "trace_ids", "trace_ids_of"]

TRACEPARENT = b"traceparent"

# version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex only (3.2.2: HEXDIGLC).
_FIELDS = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_VERSION_00_LENGTH = 55
_ZERO_TRACE_ID = b"0" * 32
_ZERO_PARENT_ID = b"0" * 16


def parse_traceparent(value: bytes) -> tuple[bytes, bytes] | None:
    """(trace-id, parent-id) of a valid traceparent value, else None."""
    match = _FIELDS.match(value)
    if match is None:
        return None
    version, trace_id, parent_id = match.groups()
    if version == b"ff":  # 3.2.2.1: forbidden
        return None
    end = _VERSION_00_LENGTH
    if version == b"00":
        if len(value) != end:
            return None
    elif len(value) > end and value[end : end + 1] != b"-":
        # A later version may append fields, each after a "-" (3.2.4, versioning).
        return None
    if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:  # 3.2.2.3, 3.2.2.4
        return None
    return trace_id, parent_id


def trace_ids(headers: Sequence[tuple[bytes, bytes]]) -> tuple[bytes, bytes] | None:
    """(trace-id, parent-id) from a request's headers: exactly one valid traceparent field,
    else None (two fields cannot both be the parent; combined they would not parse either)."""
    values = [value for name, value in headers if name.lower() == TRACEPARENT]
    return parse_traceparent(values[0]) if len(values) == 1 else None


def trace_ids_of(fields: Sequence[tuple[bytes, bytes, bytes]]) -> tuple[bytes, bytes] | None:
    """`trace_ids` of fields with their lower-case names (a request plan's)."""
    values = [item[2] for item in fields if item[1] == TRACEPARENT]
    return parse_traceparent(values[0]) if len(values) == 1 else None
