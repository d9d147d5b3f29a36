"""Which policy requirement applies to an image (pure)."""

from __future__ import annotations

import pytest

from tcv.image.ref import parse_image_ref
from tcv.image.trust import ACCEPT, REJECT, SIGNED, is_trust_failure, requirements_for, verdict

SIGNED_BY = [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}]
POLICY = {
    "default": [{"type": "insecureAcceptAnything"}],
    "transports": {
        "docker": {
            "r.example/kernels": SIGNED_BY,
            "r.example/kernels/public": [{"type": "insecureAcceptAnything"}],
            "r.example": [{"type": "reject"}],
            "*.corp.example": SIGNED_BY,
            "docker.io/library/busybox": [{"type": "reject"}],
        },
        "containers-storage": {"": [{"type": "reject"}]},
    },
}


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        pytest.param("r.example/kernels/a100:v3", SIGNED, id="namespace-scope"),
        pytest.param("r.example/kernels/public/x:1", ACCEPT, id="more-specific-wins"),
        pytest.param("r.example/other:1", REJECT, id="host-scope"),
        pytest.param("reg.corp.example/k:1", SIGNED, id="wildcard"),
        pytest.param("quay.io/x/y:1", ACCEPT, id="default"),
        pytest.param("busybox", REJECT, id="docker-io-implied"),
        pytest.param("containers-storage:localhost/k:1", REJECT, id="other-transport"),
    ],
)
def test_the_most_specific_scope_applies(image, expected):
    assert verdict(requirements_for(POLICY, parse_image_ref(image))) == expected


def test_unknown_requirement_types_and_empty_lists_reject():
    assert verdict([]) == REJECT
    assert verdict([{"type": "somethingNew"}]) == REJECT
    assert verdict([{"type": "insecureAcceptAnything"}, *SIGNED_BY]) == SIGNED


def test_trust_failures_are_told_apart_from_other_pull_failures():
    assert is_trust_failure(
        "Source image rejected: A signature was required, but no signature exists"
    )
    assert not is_trust_failure("reading blob sha256:ab: connection refused")
