"""JSON from an image, parsed with a size and a nesting bound (docs/spec.md §8).

Labels, manifests, group files and metadata come from whoever built the
image. :func:`json.loads` recurses once per nesting level and raises
``RecursionError`` on a deep document, and reads any size it is given; this
module refuses both before parsing, with a :class:`JsonBoundError` whose
message says what is wrong. Pure functions.
"""

from __future__ import annotations

import json
from typing import Any

from tcv.errors import TcvError

MAX_DEPTH = 64  # every document TCV reads is at most 5 levels deep
DEFAULT_MAX_BYTES = 16 << 20


class JsonBoundError(TcvError):
    """A JSON document that is too large, too deep or not JSON at all."""


def depth(value: Any) -> int:
    """The deepest nesting of arrays and objects in a parsed JSON ``value`` (0
    for a scalar). Walked with an explicit stack: no recursion, and no memory
    beyond the stack (a copy of the text scanned for brackets cost a 12 MB
    manifest some 100 MB)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children if isinstance(child, (dict, list)))
    return deepest


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
    # json.loads itself stops at the interpreter's recursion limit (above);
    # anything deeper than max_depth below that is refused here.
    if depth(doc) > max_depth:
        raise too_deep
    return doc
