"""AMD architecture from the KFD topology (no ROCm needed)."""

from __future__ import annotations

import pytest

from tcv.gpu.kfd import gfx_name, kfd_nodes, node_from_properties, parse_properties, pci_address

MI300X = """cpu_cores_count 0
simd_count 1216
mem_banks_count 1
wave_front_size 64
gfx_target_version 90402
vendor_id 4098
device_id 29857
location_id 49408
domain 0
drm_render_minor 128
"""
CPU = "cpu_cores_count 96\nsimd_count 0\ngfx_target_version 0\nvendor_id 0\n"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        pytest.param(90402, "gfx942", id="mi300"),
        pytest.param(90010, "gfx90a", id="mi200-hex-stepping"),
        pytest.param(90008, "gfx908", id="mi100"),
        pytest.param(90500, "gfx950", id="mi350"),
        pytest.param(110000, "gfx1100", id="rdna3"),
        pytest.param(100302, "gfx1032", id="rdna2"),
        pytest.param(120001, "gfx1201", id="rdna4"),
        pytest.param(90012, "gfx90c", id="renoir-apu"),
        pytest.param(0, None, id="cpu-node"),
    ],
)
def test_gfx_name(value, name):
    assert gfx_name(value) == name


@pytest.mark.parametrize(
    ("location", "domain", "address"),
    [
        pytest.param(49408, 0, "0000:c1:00.0", id="bus-c1"),
        pytest.param((0x3B << 8) | (2 << 3) | 1, 1, "0001:3b:02.1", id="device-function-domain"),
    ],
)
def test_pci_address(location, domain, address):
    assert pci_address(location, domain) == address


def test_node_from_properties_gpu():
    node = node_from_properties(1, parse_properties(MI300X))
    assert node is not None
    assert (node.arch, node.pci_address, node.render_node) == (
        "gfx942",
        "0000:c1:00.0",
        "/dev/dri/renderD128",
    )
    assert node.wave_front_size == 64


def test_cpu_node_is_not_a_gpu():
    assert node_from_properties(0, parse_properties(CPU)) is None


def test_parse_properties_ignores_junk():
    assert parse_properties("a 1\nbroken\nb x\n c  2 \n") == {"a": 1, "c": 2}


def test_kfd_nodes_reads_a_topology_tree(tmp_path):
    for n, text in (("0", CPU), ("1", MI300X), ("10", MI300X.replace("128", "138"))):
        (tmp_path / n).mkdir()
        (tmp_path / n / "properties").write_text(text)
    (tmp_path / "not-a-node").mkdir()
    nodes = kfd_nodes(str(tmp_path))
    assert [(n.node, n.render_node) for n in nodes] == [
        (1, "/dev/dri/renderD128"),
        (10, "/dev/dri/renderD138"),
    ]


def test_kfd_nodes_without_kfd_is_empty(tmp_path):
    assert kfd_nodes(str(tmp_path / "absent")) == []
