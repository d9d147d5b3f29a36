"""Names in a Triton cache directory: kernel KEYs in Triton's four encodings
(docs/spec.md §4) and the lock file TCV's installs take in every DEST."""

from __future__ import annotations

import base64

LOCK_NAME = ".tcv.lock"  # tcv.install holds it while it writes a DEST; scans skip it


def key_encoding(key: str) -> str | None:
    """Which of Triton's four KEY encodings ``key`` looks like (docs/spec.md §4):
    ``md5-hex`` (2.x), ``sha256-hex`` (3.0–3.1), ``sha256-base64url`` (3.2),
    ``sha256-base32`` (3.3+); None when it is none of them."""
    hexdigits = set("0123456789abcdef")
    if len(key) == 32 and set(key) <= hexdigits:
        return "md5-hex"
    if len(key) == 64 and set(key) <= hexdigits:
        return "sha256-hex"
    if len(key) == 52 and set(key) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"):
        return "sha256-base32"
    if len(key) == 43 and all(c.isalnum() or c in "-_" for c in key) and key.isascii():
        return "sha256-base64url"
    return None


def key_candidates(hash_hex: str) -> list[str]:
    """Every KEY a Triton 3.x could have filed metadata ``hash`` under, newest
    encoding first; for an md5 (2.x) the hash itself."""
    try:
        raw = bytes.fromhex(hash_hex)
    except ValueError:
        return [hash_hex]
    if len(raw) != 32:
        return [hash_hex]
    return [
        base64.b32encode(raw).decode().rstrip("="),  # 3.3+ runtime/cache.py _base32
        base64.urlsafe_b64encode(raw).decode().rstrip("="),  # 3.2
        hash_hex,  # 3.0–3.1
    ]


def key_for_hash(hash_hex: str, triton_version: str | None = None) -> str:
    """The KEY Triton ``triton_version`` files metadata ``hash`` under; the
    3.3+ encoding when the version is unknown."""
    candidates = key_candidates(hash_hex)
    if len(candidates) == 1 or not triton_version:
        return candidates[0]
    try:
        major, minor = (int(p) for p in triton_version.split(".")[:2])
    except ValueError:
        return candidates[0]
    if (major, minor) >= (3, 3):
        return candidates[0]
    if (major, minor) == (3, 2):
        return candidates[1]
    return candidates[2]


def is_key(name: str) -> bool:
    """Whether a directory name is a kernel KEY in one of the encodings."""
    return key_encoding(name) is not None
