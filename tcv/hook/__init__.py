"""The OCI runtime hook: inject compatible kernels into a container's Triton cache
(docs/spec.md §7).

Kept import-light on purpose: the runtime starts the hook for every matching
container, and a container that asked for nothing must cost almost nothing
(STYLE #5). Heavy modules (GPU discovery, the store fill) load only when needed.
"""
