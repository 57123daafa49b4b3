"""The GPU kit (benchmarks/acceptance/kit.py): what it carries, how it splits, and that every planned call
travels under the device's limit with the working tree as it is now.

The size check reads the part sizes from the committed manifest and the tree's size from ``git ls-files``,
so a commit that grows the tree past what the kit allows fails here, not on the first GPU. The splitting
and the dependency walk are also tested on made-up sizes and reports.
"""
import os
import subprocess

import pytest

from benchmarks.acceptance import kit

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1 << 20


@pytest.fixture(scope="module")
def manifest():
    return kit.load_manifest()


# ----------------------------------------------------------------------------- the committed plan
def test_every_part_travels_with_the_tree_under_60_mib(manifest):
    tree = kit.tree_bytes()
    listed = subprocess.run(["git", "-C", REPO, "ls-files", "-z"], capture_output=True, check=True).stdout.decode()
    tracked = sum(os.path.getsize(os.path.join(REPO, p)) for p in listed.split("\0")
                  if p and os.path.isfile(os.path.join(REPO, p)))
    assert tree >= tracked > 0  # the tree the device tool sends holds at least every tracked file
    assert manifest["limit_bytes"] == 60 * MIB
    for part in manifest["parts"]:  # the tree grew (study data, say): python -m benchmarks.acceptance.kit split
        assert part["bytes"] + tree < 60 * MIB, (part, tree, "split again: python -m benchmarks.acceptance.kit split")
    assert kit.size_problems({p["name"]: p["bytes"] for p in manifest["parts"]}, tree) == []


def test_manifest_parts_add_up_and_every_wheel_is_in_one_part(manifest):
    names = [p["name"] for p in manifest["parts"]]
    assert names == [f"part{i}" for i in range(1, len(names) + 1)]
    for part in manifest["parts"]:
        assert part["bytes"] == sum(w["bytes"] for w in manifest["wheels"] if w["part"] == part["name"])
    assert all(w["part"] in names and w["file"].endswith(".whl") for w in manifest["wheels"])
    assert len({w["name"] for w in manifest["wheels"]}) == len(manifest["wheels"])  # one version of each


def test_carried_wheels_are_what_the_device_lacks(manifest):
    device = kit.read_device_packages()
    assert device["torch"] == "2.11.0" and device["numpy"] == "2.5.2" and "scikit-image" in device
    carried = {w["name"] for w in manifest["wheels"]}
    assert not carried & set(device)
    # nnU-Net and the run's native dependencies travel; this package comes from the tree, not a wheel
    assert {"nnunetv2", "simpleitk", "blosc2", "acvl-utils", "edt", "connected-components-3d",
            "dynamic-network-architectures", "batchgeneratorsv2"} <= carried
    assert "nnunet-losses" not in carried and "torch" not in carried


def test_every_direct_requirement_is_on_the_device_or_carried(manifest):
    """A dependency added to setup.py without rebuilding the kit would be missing on the GPU machine."""
    from importlib import metadata

    from packaging.requirements import Requirement
    device, carried = kit.read_device_packages(), {w["name"] for w in manifest["wheels"]}
    needed = {kit.normalize(Requirement(r).name) for r in metadata.requires("nnunet-losses")
              if Requirement(r).marker is None or Requirement(r).marker.evaluate({"extra": "nnunet"})}
    assert "nnunetv2" in needed
    assert needed - set(device) - carried == set(), "rebuild the kit: python -m benchmarks.acceptance.kit build"


def test_manifest_calls_are_the_plan_this_code_makes(manifest):
    parts = [p["name"] for p in manifest["parts"]]
    assert manifest["calls"] == kit.plan_calls(parts)


def test_split_regroups_the_wheels_for_a_larger_tree_without_fetching(tmp_path):
    """Made-up wheels of 40, 15 and 10 MiB: with a 2 MiB tree the 40 and 15 share a part; with a 5 MiB tree
    (40 + 15 + 5 + the 2 MiB margin > 60) the 15 goes alone and the 10 joins the 40 (first fit, largest
    first). Parts already built here are regrouped."""
    wheels = [{"name": n, "file": f"{n}.whl", "bytes": b * MIB, "sha256": "", "part": "part1"}
              for n, b in (("big", 40), ("mid", 15), ("small", 10))]
    old = {"wheels": wheels, "parts": [{"name": "part1", "bytes": 65 * MIB}], "calls": [], "about": "kept"}
    kit_dir = tmp_path / "kit"
    (kit_dir / "wheels").mkdir(parents=True)
    for w in wheels:
        (kit_dir / "wheels" / w["file"]).write_bytes(b"x")
    (kit_dir / "part1").mkdir()
    (kit_dir / "part1" / "stale.whl").write_bytes(b"x")
    small_tree = kit.split(old, 2 * MIB, kit=str(kit_dir))
    assert [p["bytes"] // MIB for p in small_tree["parts"]] == [55, 10]
    new = kit.split(old, 5 * MIB, kit=str(kit_dir))
    assert {w["name"]: w["part"] for w in new["wheels"]} == {"big": "part1", "mid": "part2", "small": "part1"}
    assert [p["bytes"] // MIB for p in new["parts"]] == [50, 15] and new["tree_bytes_at_build"] == 5 * MIB
    assert new["calls"] == kit.plan_calls(["part1", "part2"]) and new["about"] == "kept"
    assert sorted(os.listdir(kit_dir / "part1")) == ["big.whl", "small.whl"]  # the stale wheel gone
    assert sorted(os.listdir(kit_dir / "part2")) == ["mid.whl"]
    assert kit.size_problems({p["name"]: p["bytes"] for p in new["parts"]}, 5 * MIB) == []


# ----------------------------------------------------------------------------- the calls
def test_plan_installs_every_part_then_runs_the_acceptance_in_the_last_call():
    calls = kit.plan_calls(["part1", "part2", "part3"])
    assert [c["carry"] for c in calls] == [[".gpu_kit/part1"], [".gpu_kit/part2"], [".gpu_kit/part3"]]
    for i, c in enumerate(calls, 1):
        assert f"pip install -q --no-index --no-deps --no-cache-dir .gpu_kit/part{i}/*.whl" in c["command"]
        assert len(c["command"]) <= 2000 and c["timeout_s"] <= 600  # the device tool's limits
    assert all("benchmarks.acceptance.gpu" not in c["command"] for c in calls[:-1])
    last = calls[-1]["command"]
    order = [last.index(s) for s in (".gpu_kit/part3", "--no-build-isolation --no-cache-dir .",
                                     "benchmarks.acceptance.kit verify", "benchmarks.acceptance.gpu --out \"$OUT\"")]
    assert order == sorted(order)
    assert last.startswith("set -o pipefail;") and "&& PYTHONUNBUFFERED=1" in last  # a failed verify stops it
    dry = kit.plan_calls(["part1", "part2", "part3"], kit.DRY_RUN_ARGS)
    assert [c["command"] for c in dry[:-1]] == [c["command"] for c in calls[:-1]]
    assert dry[-1]["command"] == last.replace(kit.DEVICE_ARGS, kit.DRY_RUN_ARGS)


def test_plan_text_names_sizes_and_flags_a_part_too_large():
    manifest = {"device_python": "3.12.3", "wheels": [{}, {}], "parts": [{"name": "part1", "bytes": 50 * MIB},
                                                                        {"name": "part2", "bytes": 59 * MIB}],
                "calls": kit.plan_calls(["part1", "part2"])}
    text = kit.format_plan(manifest, tree=2 * MIB)
    assert "1. carry [\".gpu_kit/part1\"]  (50.0 MiB + tree = 52.0 MiB)" in text
    assert "TOO LARGE" in text and "part2: 59.0 MiB + tree 2.0 MiB = 61.0 MiB" in text
    one = {**manifest, "parts": manifest["parts"][:1], "calls": kit.plan_calls(["part1"])}
    assert "TOO LARGE" not in kit.format_plan(one, tree=2 * MIB)


# ----------------------------------------------------------------------------- splitting (made-up sizes)
@pytest.mark.parametrize("sizes,capacity,expected", [
    ({"sitk": 50, "blosc": 8, "cc3d": 5, "edt": 3, "nnunet": 1}, 58, [["sitk", "blosc"], ["cc3d", "edt", "nnunet"]]),
    ({"a": 10, "b": 10, "c": 10}, 30, [["a", "b", "c"]]),
    ({"a": 10, "b": 10, "c": 10}, 29, [["a", "b"], ["c"]]),
    ({}, 10, []),
])
def test_split_parts_first_fit_decreasing(sizes, capacity, expected):
    parts = kit.split_parts(sizes, capacity)
    assert parts == expected
    assert sorted(n for p in parts for n in p) == sorted(sizes)  # every file exactly once
    assert all(sum(sizes[n] for n in p) <= capacity for p in parts)


def test_split_parts_refuses_a_file_larger_than_a_part():
    with pytest.raises(ValueError, match="sitk alone exceed"):
        kit.split_parts({"sitk": 61, "edt": 3}, 58)


def test_size_problems_at_the_limit():
    assert kit.size_problems({"p1": 58 * MIB - 1}, 2 * MIB) == []
    assert kit.size_problems({"p1": 58 * MIB}, 2 * MIB) == ["p1: 58.0 MiB + tree 2.0 MiB = 60.0 MiB, not under 60 MiB"]


# ----------------------------------------------------------------------------- what is carried (made-up report)
def _item(name, *requires):
    return {"metadata": {"name": name, "version": "1", "requires_dist": list(requires)}}


def test_carried_stops_at_device_packages_and_follows_requested_extras():
    items = [_item("nnunet-losses", "torch>=2.1", "edt", "nnunetv2>=2.8; extra == 'nnunet'"),
             _item("edt", "numpy"), _item("nnunetv2", "Blosc2", "requests[socks]", "acvl_utils<0.3"),
             _item("blosc2", "numpy", "pydantic"), _item("pydantic", "pydantic-core==2"), _item("pydantic-core"),
             _item("requests", "urllib3", "PySocks; extra == 'socks'"), _item("pysocks"), _item("urllib3"),
             _item("acvl-utils", "connected-components-3d"), _item("connected-components-3d", "numpy"),
             _item("torch", "nvidia-cublas; platform_system == 'Linux'"), _item("nvidia-cublas"), _item("numpy")]
    device = {"torch": "2.11.0", "numpy": None, "requests": None}
    got = kit.carried(items, ["nnunet-losses[nnunet]"], device)
    assert got == ["nnunet-losses", "edt", "nnunetv2", "blosc2", "acvl-utils", "pydantic", "connected-components-3d",
                   "pydantic-core"]
    assert "nnunetv2" not in kit.carried(items, ["nnunet-losses"], device)  # extra not asked for
    env = {**kit.DEVICE_ENV, "python_version": "3.7"}
    assert kit.carried([_item("a", "b; python_version >= '3.8'"), _item("b")], ["a"], {}, env) == ["a"]
    with pytest.raises(ValueError, match="missing from the resolution report"):
        kit.carried([_item("a", "b")], ["a"], {})


def test_read_device_packages_normalises_names(tmp_path):
    f = tmp_path / "pkgs.txt"
    f.write_text("# comment\nScikit_Image\ntorch==2.11.0  # pinned\n\nhuggingface.hub==1.0\n")
    assert kit.read_device_packages(str(f)) == {"scikit-image": None, "torch": "2.11.0", "huggingface-hub": "1.0"}


# ----------------------------------------------------------------------------- verify (what the device runs)
def test_verify_names_what_is_missing():
    fake = {"wheels": [{"name": "pytest", "part": "part1"},
                       {"name": "surely-not-installed-dist", "part": "part2"}]}
    problems = kit.verify(fake)
    assert len(problems) == 1 and problems[0].startswith("surely-not-installed-dist is not installed (from part2)")
    assert "make all calls of the plan again" in problems[0]
