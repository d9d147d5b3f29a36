"""JSON from an image, parsed with a size and a nesting bound (docs/spec.md §8).

Labels, manifests, group files and metadata come from whoever built the
image. :func:`json.loads` recurses once per nesting level and raises
``RecursionError`` on a deep document, and reads any size it is given; this
module refuses both before parsing, with a :class:`JsonBoundError` whose
message says what is wrong. Pure functions.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from tcv.errors import TcvError

MAX_DEPTH = 64  # every document TCV reads is at most 5 levels deep
DEFAULT_MAX_BYTES = 16 << 20

# A JSON string, escapes included; what is left outside them is structure.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JsonBoundError(TcvError):
    """A JSON document that is too large, too deep or not JSON at all."""


def depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in the valid JSON ``data``
    (0 for a scalar)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(accumulate(_STEP[b] for b in brackets))


def loads(
    data: bytes | str,
    what: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """``json.loads(data)``, or :class:`JsonBoundError` naming ``what`` when
    ``data`` is larger than ``max_bytes``, nested deeper than ``max_depth`` or
    not valid JSON."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise JsonBoundError(f"{what} is implausibly large ({len(raw)} bytes, at most {max_bytes})")
    too_deep = JsonBoundError(f"{what} is nested more than {max_depth} levels deep")
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except ValueError as err:
        raise JsonBoundError(f"{what} is not valid JSON ({err})") from None
    # Measured on the bytes once they are known to be JSON: every string is
    # closed, so the scan is linear.
    if depth(raw) > max_depth:
        raise too_deep
    return doc
