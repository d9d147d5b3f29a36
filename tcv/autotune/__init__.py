"""``--with-autotune``: autotuning results packed for one GPU model and installed
only where a visible GPU is that model (docs/workloads.md, docs/spec.md §3, §4).

``pack`` and ``install`` handle Triton's ``<KEY>/*.autotune.json``;
``inductor_pack`` and ``inductor_install`` handle Inductor's ``*.best_config``.
The pure rules (names, contents, labels, matching) live in
:mod:`tcv.cache.autotune` and :mod:`tcv.cache.bestconfig`.
"""
