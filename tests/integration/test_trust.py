"""The containers signature policy, with real GPG signatures: ``skopeo copy
--sign-by`` signs an image into a lookaside store on disk (registries.d), a
``signedBy`` policy scoped to the test's repository accepts it and refuses an
unsigned image and one signed by another key — one line, exit 1, no layer
requested, DEST never created — and a ``reject`` scope is refused before any
request, by ``tcv -e`` and ``tcv inspect`` alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.manifest import build_labels, build_manifest
from tests.harness import hostile as h

pytestmark = pytest.mark.integration

TCV = Path(sys.executable).with_name("tcv")
REGISTRIES_D = Path("/etc/containers/registries.d")


def gpg_key(home: Path, name: str) -> tuple[str, Path]:
    """A signing key in its own GNUPGHOME; (fingerprint, exported public key)."""
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"{name} <{name}@t.invalid>",
         "ed25519", "sign", "1d"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    listing = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-keys"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    fpr = next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))
    pub = home / "pub.gpg"
    pub.write_bytes(
        subprocess.run(
            ["gpg", "--batch", "--export", fpr], env=env, check=True, capture_output=True
        ).stdout
    )
    return fpr, pub


@pytest.fixture(scope="module")
def trust(registry, caches_dir, tmp_path_factory):
    """Three images in one repository scope: signed by ours, unsigned, signed by
    another key; the lookaside store configured for this registry only."""
    work = tmp_path_factory.mktemp("trust")
    ours, ours_pub = gpg_key(work / "gpg-ours", "ours")
    theirs, _ = gpg_key(work / "gpg-theirs", "theirs")
    lookaside = work / "sigstore"
    lookaside.mkdir()
    REGISTRIES_D.mkdir(parents=True, exist_ok=True)
    conf = REGISTRIES_D / f"tcv-test-{uuid.uuid4().hex[:8]}.yaml"
    conf.write_text(
        f"docker:\n  {registry.host}:\n    sigstore: file://{lookaside}\n"
        f"    sigstore-staging: file://{lookaside}\n"
    )
    cache = caches_dir / "triton-3.9"
    entries = scan_cache(cache).entries
    members = h.cache_members(cache, None, build_manifest(entries, str(cache)))
    repo = f"tcv-it/trust-{uuid.uuid4().hex[:8]}"
    refs = {}
    for tag, key, home in (("signed", ours, "gpg-ours"), ("unsigned", None, None),
                           ("other", theirs, "gpg-theirs")):  # fmt: skip
        # One image per tag (its own digest): signatures are stored per digest.
        image = h.write_image(work / tag, [h.Layer(members)], build_labels(entries, tag))
        ref = registry.ref(f"{repo}:{tag}")
        argv = ["skopeo", "copy", "-q", "--dest-tls-verify=false"]
        env = dict(os.environ)
        if key:
            argv += ["--sign-by", key]
            env["GNUPGHOME"] = str(work / home)
        subprocess.run([*argv, image.ref(), f"docker://{ref}"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        refs[tag] = ref
    policy = work / "policy.json"
    policy.write_text(json.dumps({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {
            f"{registry.host}/{repo}": [
                {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(ours_pub)}
            ],
            f"{registry.host}/tcv-it/rejected": [{"type": "reject"}],
        }},
    }))  # fmt: skip
    try:
        yield refs, policy, image
    finally:
        conf.unlink()


def extract(ref: str, policy: Path, tmp: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    dest = tmp / f"dest-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [str(TCV), "-e", "-i", ref, "--tls-verify=false", "--gpu", "cuda:90", "-d", str(dest),
         "--signature-policy", str(policy), "--json"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TCV_STAGING_ROOT": str(tmp)},
    )  # fmt: skip
    return proc, dest


def test_an_image_signed_by_the_pinned_key_is_installed(trust, tmp_path):
    refs, policy, _ = trust
    proc, _ = extract(refs["signed"], policy, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["installed"]


@pytest.mark.parametrize("tag", ["unsigned", "other"], ids=["unsigned", "signed-by-another-key"])
def test_an_image_the_policy_does_not_admit_is_refused_before_any_layer(
    trust, registry, tmp_path, tag
):
    refs, policy, image = trust
    before = len(registry.requests())
    proc, dest = extract(refs[tag], policy, tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "is not trusted by" in lines[0] and str(policy) in lines[0]
    served = [str(r["uri"]) for r in registry.requests()[before:] if "/blobs/" in str(r["uri"])]
    assert not [u for u in served if any(d in u for d in image.layer_digests)], served
    assert not dest.exists()
    assert json.loads(proc.stdout)["exit_code"] == 1


def test_a_rejected_scope_is_refused_before_any_request(trust, registry, tmp_path):
    _, policy, _ = trust
    ref = registry.ref("tcv-it/rejected:1")
    before = len(registry.requests())
    proc, dest = extract(ref, policy, tmp_path)
    assert proc.returncode == 1
    assert "rejects" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    seen = subprocess.run(
        [str(TCV), "inspect", ref, "--tls-verify=false", "--signature-policy", str(policy)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert seen.returncode == 1 and "rejects" in seen.stderr
    assert not [r for r in registry.requests()[before:] if "tcv-it/rejected" in str(r["uri"])]
    assert not dest.exists()


def test_inspect_says_a_signature_will_be_required(trust, tmp_path):
    refs, policy, _ = trust
    seen = subprocess.run(
        [str(TCV), "inspect", refs["unsigned"], "--tls-verify=false", "--signature-policy",
         str(policy), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert seen.returncode == 0, seen.stderr
    assert "verified when the kernels are pulled" in json.loads(seen.stdout)["signature"]
