"""``tcv inspect IMAGE``: an image's summary labels, without downloading layers."""

from __future__ import annotations

from tcv.cli.base import TcvApplication
from tcv.cli.options import JsonOption, RegistrySwitches
from tcv.errors import EXIT_OK


class Inspect(TcvApplication, JsonOption, RegistrySwitches):
    """Print what a Triton cache image says about itself — digest, labels, and the
    targets of its summary (backend, arch, warp size, Triton and PTX versions, kernel
    counts) — reading only its manifest and config, never a layer. A fleet image
    (an image index made by tcv -c --split-by-target) is described from the index
    alone, one image per target; an OCI artifact from its manifest alone. An
    image packed with --with-autotune shows the GPU model its autotuning results
    were measured on and their count (the autotune row; "autotune" in --json).

    IMAGE is a registry reference (docker://, the default), containers-storage:NAME,
    oci:DIR[:TAG], oci-archive:FILE or docker-archive:FILE. Exit status 5 when the
    image cannot be found or the registry cannot be reached, 1 when the signature
    policy (--signature-policy FILE, else policy.json) rejects it. inspect verifies no
    signature itself (it reads no more than the manifest and config): it says when
    the policy will require one on the pull."""

    PROGNAME = "tcv inspect"
    USAGE = "    tcv inspect IMAGE [--json] [--tls-verify=false] [--authfile FILE]\n"

    def main(self, image: str) -> int:
        from tcv.image.describe import inspect_image
        from tcv.image.names import resolve_image
        from tcv.image.trust import SIGNED, refuse_if_rejected
        from tcv.output import render_json

        ref = resolve_image(image)
        opts = self.registry_options()
        trust = refuse_if_rejected(ref, opts.signature_policy)
        desc = inspect_image(ref, opts)
        # inspect reads labels only: a required signature is verified on the pull.
        note = "required by the policy; verified when the kernels are pulled"
        if self.json:
            doc = desc.to_json()
            if trust == SIGNED:
                doc["signature"] = note
            print(render_json(doc))
        else:
            print(render_description(desc))
            if trust == SIGNED:
                print(f"signature: {note} (tcv -e)")
        return EXIT_OK


def render_description(desc) -> str:
    """The human form: the image, its labels, then one row per summary target."""
    from tcv.image.manifest import LABEL_SUMMARY
    from tcv.output import human_bytes, render_table

    size = desc.cache_size
    head = [
        ["image", str(desc.ref)],
        ["digest", desc.digest or "-"],
        ["kernels", desc.entry_count if desc.entry_count is not None else "-"],
        ["size", human_bytes(size) if size is not None else "-"],
    ]
    if desc.kind != "image":
        what = f"image index of {len(desc.entries)} images" if desc.entries else desc.kind
        head.insert(1, ["kind", what])
    from tcv.cache.autotune import LABEL_COUNT, LABEL_DEVICE, read_labels

    recorded = read_labels(desc.labels)
    if recorded is not None:
        if recorded.problem:
            head.append(["autotune", f"ignored: {recorded.problem}"])
        else:
            head.append(["autotune", f"{recorded.count} results, measured on {recorded.device}"])
    for name, value in sorted(desc.labels.items()):
        # The autotune labels are shown validated above, never as the image wrote them.
        if name not in (LABEL_SUMMARY, LABEL_DEVICE, LABEL_COUNT):
            head.append([name, value])
    lines = [render_table(["FIELD", "VALUE"], head), ""]
    if desc.targets is None:
        lines.append(
            "no cache.triton.image/summary label: not a TCV cache image, or one made by an "
            "older tool (tcv -e still reads its kernels' metadata after the pull)"
        )
    else:
        rows = [
            [
                t.backend,
                t.arch,
                t.warp_size,
                t.triton_version,
                f"{t.ptx_version // 10}.{t.ptx_version % 10}" if t.ptx_version else None,
                t.entries,
            ]
            for t in desc.targets
        ]
        lines.append(render_table(["BACKEND", "ARCH", "WARP", "TRITON", "PTX", "KERNELS"], rows))
    if desc.entries:
        from tcv.image.fleet import ANNOTATION_TARGET

        rows = [[e.labels.get(ANNOTATION_TARGET, "-"), e.digest] for e in desc.entries]
        lines += ["", render_table(["TARGET", "IMAGE"], rows)]
    return "\n".join(lines)
