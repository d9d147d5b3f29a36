"""Overrides (--gpu, TCV_GPUS, --cuda-driver) and restricting to a container's GPUs.

Detection itself runs against umockdev recordings and a stand-in libcuda in
tests/integration/test_gpu_udev.py and test_gpu_cuda.py.
"""

from __future__ import annotations

import pytest

from tcv.errors import UsageError
from tcv.gpu.discover import host_gpus, select_visible
from tcv.gpu.model import Gpu, HostGpus


def test_specs_win_over_env():
    host = host_gpus(["hip:gfx942"], env={"TCV_GPUS": "cuda:80"})
    assert [(g.backend, g.arch) for g in host.gpus] == [("hip", "gfx942")]
    assert host.cuda_driver is None


def test_env_specs_are_semicolon_separated():
    host = host_gpus(None, env={"TCV_GPUS": "cuda:90; hip:gfx1100 ;", "TCV_CUDA_DRIVER": "12.8"})
    assert [(g.index, g.backend, g.arch, g.warp_size) for g in host.gpus] == [
        (0, "cuda", "90", 32),
        (1, "hip", "gfx1100", 32),
    ]
    assert host.cuda_driver == (12, 8)
    assert host.gpus[0].driver == "12.8"
    assert host.gpus[1].driver is None


def test_cuda_driver_switch_wins_over_env():
    host = host_gpus(["cuda:90"], "13.0", env={"TCV_CUDA_DRIVER": "12.4"})
    assert host.cuda_driver == (13, 0)


@pytest.mark.parametrize(
    ("specs", "driver", "env", "needle"),
    [
        pytest.param(["cuda:9.0"], None, {}, "bad GPU SPEC 'cuda:9.0'", id="bad-spec"),
        pytest.param(None, None, {"TCV_GPUS": "npu:1"}, "bad GPU SPEC 'npu:1'", id="bad-env"),
        pytest.param(["cuda:90"], "latest", {}, "bad CUDA driver version", id="bad-driver"),
    ],
)
def test_bad_overrides_are_usage_errors(specs, driver, env, needle):
    with pytest.raises(UsageError, match=needle.replace(".", r"\.")):
        host_gpus(specs, driver, env=env)


H100_0 = Gpu(
    0, "cuda", "90", 32, "H100", "12.4", "cuda", "0000:3b:00.0", ("/dev/nvidia0",), "GPU-aaaa"
)
H100_1 = Gpu(
    1, "cuda", "90", 32, "H100", "12.4", "cuda", "0000:86:00.0", ("/dev/nvidia1",), "GPU-bbbb"
)
MI300 = Gpu(
    2,
    "hip",
    "gfx942",
    64,
    "MI300X",
    None,
    "kfd",
    "0000:c1:00.0",
    ("/dev/dri/card0", "/dev/dri/renderD128"),
)
W7900 = Gpu(
    3,
    "hip",
    "gfx1100",
    32,
    "W7900",
    None,
    "kfd",
    "0000:e3:00.0",
    ("/dev/dri/card1", "/dev/dri/renderD129"),
)
HIP_ONLY = Gpu(4, "hip", "gfx90a", 64, "MI250", None, "hip", None, ("/dev/kfd",))
DETECTED = HostGpus((H100_0, H100_1, MI300, W7900), (12, 4))


@pytest.mark.parametrize(
    ("nodes", "nvd", "indices"),
    [
        pytest.param([], None, [], id="nothing-given"),
        pytest.param(["/dev/nvidia1", "/dev/nvidiactl"], None, [1], id="nvidia-node"),
        pytest.param([], "all", [0, 1], id="nvidia-all"),
        pytest.param([], "1", [1], id="nvidia-index-in-pci-order"),
        pytest.param([], "0,1", [0, 1], id="nvidia-index-list"),
        pytest.param([], "GPU-BBBB", [1], id="nvidia-uuid-any-case"),
        pytest.param(["/dev/nvidia0"], "none", [0], id="none-but-node-given"),
        pytest.param([], "void", [], id="void"),
        pytest.param(["/dev/kfd", "/dev/dri/renderD129"], None, [3], id="amd-render-node"),
        pytest.param(
            ["/dev/kfd", "/dev/dri/card0", "/dev/dri/renderD128"], "0", [0, 2], id="mixed"
        ),
        pytest.param(["/dev/kfd"], None, [], id="kfd-alone-names-no-render-node"),
    ],
)
def test_select_visible(nodes, nvd, indices):
    host = select_visible(DETECTED, nodes, nvd)
    assert [g.index for g in host.gpus] == indices
    assert host.cuda_driver == (12, 4)


def test_select_visible_nvidia_node_unknown_is_pci_order():
    a = Gpu(0, "cuda", "90", 32, "H100", None, "cuda", "0000:86:00.0")
    b = Gpu(1, "cuda", "80", 32, "A100", None, "cuda", "0000:3b:00.0")
    host = select_visible(HostGpus((a, b), None), ["/dev/nvidia0"], None)
    assert [g.name for g in host.gpus] == ["A100"]


def test_select_visible_kfd_for_gpus_without_known_nodes():
    host = HostGpus((HIP_ONLY,), None)
    assert [g.index for g in select_visible(host, ["/dev/kfd"], None).gpus] == [4]
    assert select_visible(host, ["/dev/nvidia0"], None).gpus == ()


OVERRIDES = host_gpus(["cuda:90", "hip:gfx942"], env={})


@pytest.mark.parametrize(
    ("nodes", "nvd", "backends"),
    [
        pytest.param([], None, ["cuda", "hip"], id="no-devices-still-pass"),
        pytest.param(["/dev/nvidia0"], "all", ["cuda", "hip"], id="all"),
        pytest.param([], "none", ["hip"], id="none-drops-cuda"),
        pytest.param([], "void", ["hip"], id="void-drops-cuda"),
    ],
)
def test_overrides_pass_through(nodes, nvd, backends):
    host = select_visible(OVERRIDES, nodes, nvd)
    assert [g.backend for g in host.gpus] == backends
