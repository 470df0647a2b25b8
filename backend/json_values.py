"""Numbers on their way to JSON or a database column: NaN and infinities become None.

NaN and inf are not JSON and not every database stores them; a diverged run's last loss, say,
is stored as "no value". One helper for every place that writes such numbers.
"""

from __future__ import annotations

import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """`value` unless it is a non-finite float (NaN, +-inf), which becomes None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float inside dicts, lists and tuples replaced by None
    (tuples become lists, keys become strings), ready for a JSON column."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return finite_or_none(value)
