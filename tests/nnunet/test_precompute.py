"""nnunet_losses_precompute on tiny datasets preprocessed by nnU-Net itself.

The module fixture builds two synthetic raw datasets (nnunet_losses.nnunet.testing.synthetic: a 3D label
dataset with an ignore label, a 2D region dataset with an ignore label) and runs nnU-Net's own
``nnUNetv2_plan_and_preprocess`` entry point on them, in one subprocess. Two tiny-data overheads
of nnU-Net are switched off there to keep the suite fast: its worker pools run as thread pools
(no process start-up) and the fingerprint samples 1e5 instead of 1e8 foreground intensities. The
files written are nnU-Net's own (its preprocessor, its blosc2 writer).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import blosc2
import numpy as np
import pytest

pytest.importorskip("nnunetv2")

from nnunet_losses.morphology import numpy_ops as maps  # noqa: E402
from nnunet_losses._io import TMP_MARK  # noqa: E402
from nnunet_losses.nnunet import maps as pc  # noqa: E402
from nnunet_losses.nnunet.maps import build, manifest, registry  # noqa: E402
from nnunet_losses.nnunet.maps.auto_width import resolve_auto  # noqa: E402
from nnunet_losses.nnunet.maps.map_files import map_path  # noqa: E402
from nnunet_losses.nnunet.maps.registry import map_kind  # noqa: E402

VENV_BIN = os.path.dirname(sys.executable)
LABELS_3D = "Dataset990_SynthLabels3D"
REGIONS_2D = "Dataset991_SynthRegions2D"

_PREPROCESS = textwrap.dedent("""
    import multiprocessing, multiprocessing.pool, sys
    class _InProcess:
        def Pool(self, processes=None, *a, **k):
            return multiprocessing.pool.ThreadPool(processes)
    multiprocessing.get_context = lambda method=None: _InProcess()
    multiprocessing.Pool = lambda processes=None, *a, **k: multiprocessing.pool.ThreadPool(processes)
    from nnunet_losses.nnunet.testing import synthetic as s
    s.make_label_dataset_3d(sys.argv[1], 990, num_cases=4, shape=(20, 24, 24), ignore=True)
    s.make_region_dataset_2d(sys.argv[1], 991, num_cases=3, shape=(48, 48), ignore=True)
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor as F
    _init = F.__init__
    def _init_small(self, *a, **k):
        _init(self, *a, **k)
        self.num_foreground_voxels_for_intensitystats = 1e5
    F.__init__ = _init_small
    from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import plan_and_preprocess_entry
    sys.argv = ['nnUNetv2_plan_and_preprocess', '-d', '990', '991', '-c', '3d_fullres', '2d', '-np', '1']
    plan_and_preprocess_entry()
""")


def _env(root):
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
               nnUNet_results=str(root / "res"), OMP_NUM_THREADS="1", nnUNet_def_n_proc="1")
    return env


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet")
    r = subprocess.run([sys.executable, "-c", _PREPROCESS, str(root / "raw")], env=_env(root),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return root


@pytest.fixture
def root(pristine, tmp_path):
    """A private copy of the preprocessed datasets (tests modify them)."""
    shutil.copytree(pristine / "pre", tmp_path / "pre")
    return tmp_path


def ctx_for(root, dataset, config):
    base = root / "pre" / dataset
    cm = json.load(open(base / "nnUNetPlans.json"))["configurations"][config]
    return pc.MapContext.from_nnunet(str(base / "nnUNetPlans.json"), config, str(base / "dataset.json"),
                                     folder=str(base / cm["data_identifier"]))


def seg_of(ctx, case):
    return blosc2.open(os.path.join(ctx.folder, case + "_seg.b2nd"))[:]


def map_file(ctx, case, name, params=None):
    """The file of one map with ``params`` (the defaults if None)."""
    return map_path(ctx.maps_dir, case, name, pc.resolve_map(ctx, name, params).fingerprint)


def stored(ctx, case, name, params=None):
    arr = pc.load_map(ctx.folder, case, name, None if params is None else pc.resolve_map(ctx, name, params))[:]
    if arr.dtype == np.uint8:
        return pc.unpack_bits(arr, len(pc.map_channels(ctx.folder, name)))
    return arr


# ----------------------------------------------------------------------------- command line
def test_cli_writes_maps_and_manifest_nnunet_still_reads_the_folder(root):
    env = _env(root)
    r = subprocess.run([os.path.join(VENV_BIN, "nnunet_losses_precompute"), "-d", "990", "-c", "3d_fullres", "2d",
                        "--maps", "contour", "dwce", "osc", "-np", "2", "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "built {'contour': 4, 'dwce': 4, 'osc': 4}" in r.stdout and "% of the preprocessed data" in r.stdout
    for config in ("3d_fullres", "2d"):
        ctx = ctx_for(root, LABELS_3D, config)
        cases = ctx.identifiers()
        assert len(cases) == 4
        man = json.load(open(pc.manifest_path(ctx.folder)))
        assert man["version"] == manifest.package_version() and man["dataset"] == LABELS_3D
        assert man["configuration"] == config and man["plans"] == "nnUNetPlans"
        for case in cases:
            entry = man["cases"][case]
            assert entry["seg"]["sha"] == pc.array_fingerprint(seg_of(ctx, case))
            for name in ("contour", "dwce", "osc"):
                (sha, e), = entry["maps"][name].items()        # one parameter set per kind, by fingerprint
                assert sha == e["params_sha"] == pc.resolve_map(ctx, name).fingerprint
                assert os.path.getsize(os.path.join(ctx.maps_dir, f"{case}_{name}_{sha}.b2nd")) == e["size"]
                assert man["params"][sha]["params"] == dict(pc.resolve_map(ctx, name).params)
        # nnU-Net's own dataset class still sees exactly the cases and can infer its format
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class, nnUNetDatasetBlosc2
        assert sorted(nnUNetDatasetBlosc2.get_identifiers(ctx.folder)) == cases
        assert infer_dataset_class(ctx.folder) is nnUNetDatasetBlosc2
        assert not any(f.endswith(".b2nd") and "_seg" not in f and f[:-5] not in cases for f in os.listdir(ctx.folder))
        # a second run skips everything
        res = pc.precompute(ctx, ["contour", "dwce", "osc"], progress=False)
        assert res["built"] == {"contour": [], "dwce": [], "osc": []} and res["skipped"] == 12
    # chunking follows nnU-Net's rule for the configuration's patch size
    ctx = ctx_for(root, LABELS_3D, "3d_fullres")
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params
    arr = pc.load_map(ctx.folder, cases[0], "dwce")
    assert (tuple(arr.blocks), tuple(arr.chunks)) == comp_blosc2_params(arr.shape, ctx.patch_size, 2)


def test_cli_errors_are_clear(root):
    r = subprocess.run([os.path.join(VENV_BIN, "nnunet_losses_precompute"), "-d", "990", "-c", "3d_lowres",
                        "--maps", "contour", "--no-progress"], env=_env(root), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "3d_lowres" in r.stderr and "available" in r.stderr


# ----------------------------------------------------------------------------- contents
def test_stored_maps_equal_the_map_functions(root):
    # 3d_fullres: 3D maps; labels 1, 2 and the ignore label 3
    ctx = ctx_for(root, LABELS_3D, "3d_fullres")
    assert ctx.ignore_label == 3 and ctx.num_classes == 3 and not ctx.slicewise
    pc.precompute(ctx, ["contour", "dwce", "osc"], progress=False)
    k = maps.anisotropic_kernel(ctx.spacing, 3)
    it, band = resolve_auto("contour_iterations", ctx)[0], resolve_auto("osc_band", ctx)[0]  # the "auto" defaults
    for case in ctx.identifiers():
        lab = np.maximum(seg_of(ctx, case)[0], 0)
        kw = dict(num_classes=3, ignore_label=3)
        exp = np.concatenate([maps.boundary_band(lab, kernel_size=k, iterations=it, **kw)[None],
                              maps.class_contours(lab, kernel_size=k, iterations=it, **kw)])
        got = stored(ctx, case, "contour")
        np.testing.assert_array_equal(got, exp)
        assert got[0].any() and got[1].any() and got[2].any()
        np.testing.assert_array_equal(stored(ctx, case, "osc"), maps.offset_band(lab, band=band, **kw))
        w = stored(ctx, case, "dwce")
        assert w.dtype == np.float16 and w.shape == (1, *lab.shape)
        np.testing.assert_array_equal(w[0], maps.unet_weight_map(lab, ignore_label=3).astype(np.float16))
    assert pc.map_channels(ctx.folder, "contour") == ["band", "contour:1", "contour:2"]

    # 2d configuration of 3D data: every slice on its own
    ctx2 = ctx_for(root, LABELS_3D, "2d")
    assert ctx2.slicewise
    pc.precompute(ctx2, {"contour": {"iterations": 2}, "dwce": None}, progress=False)
    case = ctx2.identifiers()[0]
    lab = np.maximum(seg_of(ctx2, case)[0], 0)
    got = stored(ctx2, case, "contour")
    for z in range(lab.shape[0]):
        np.testing.assert_array_equal(got[1:, z], maps.class_contours(lab[z], 3, iterations=2, ignore_label=3))
        np.testing.assert_array_equal(got[0, z], maps.boundary_band(lab[z], 3, iterations=2, ignore_label=3))
    np.testing.assert_array_equal(stored(ctx2, case, "dwce")[0],
                                  maps.unet_weight_map(lab, ignore_label=3, per_slice=True).astype(np.float16))

    # region training (sigmoid): one channel per region, band over regions and complements
    ctxr = ctx_for(root, REGIONS_2D, "2d")
    assert ctxr.regions == [(1, 2), (2,)] and ctxr.ignore_label == 3
    pc.precompute(ctxr, ["contour", "osc", "dwce"], progress=False, num_processes=2)
    it, band = resolve_auto("contour_iterations", ctxr)[0], resolve_auto("osc_band", ctxr)[0]
    assert pc.map_channels(ctxr.folder, "contour") == ["band", "contour:region[1, 2]", "contour:region[2]"]
    outside = []
    for case in ctxr.identifiers():
        seg = seg_of(ctxr, case)[0]
        outside.append((seg == -1).any())  # nnU-Net's "outside the nonzero mask" marker: background for the maps
        lab = np.maximum(seg, 0)
        kw = dict(regions=[(1, 2), (2,)], ignore_label=3, kernel_size=(1, 3, 3))
        got = stored(ctxr, case, "contour")
        np.testing.assert_array_equal(got[1:], maps.class_contours(lab, iterations=it, **kw))
        np.testing.assert_array_equal(got[0], maps.boundary_band(lab, iterations=it, **kw))
        np.testing.assert_array_equal(stored(ctxr, case, "osc"), maps.offset_band(lab, band=band, **kw))
        assert not got[:, lab == 3].any()
        np.testing.assert_array_equal(stored(ctxr, case, "dwce")[0],
                                      maps.unet_weight_map(lab, ignore_label=3, per_slice=True).astype(np.float16))
    assert any(outside)


# ----------------------------------------------------------------------------- staleness
def _rewrite_seg(ctx, case, change_voxel):
    """Rewrite one segmentation with nnU-Net's own writer (optionally changing one voxel)."""
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    path = os.path.join(ctx.folder, case + "_seg.b2nd")
    seg = seg_of(ctx, case)
    if change_voxel:
        seg[(0,) + tuple(s // 2 for s in seg.shape[1:])] = 2
    st = os.stat(path)
    nnUNetDatasetBlosc2.save_seg(seg, os.path.join(ctx.folder, case + "_seg"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))


def test_changed_parameter_or_segmentation_marks_exactly_those_stale(root):
    ctx = ctx_for(root, LABELS_3D, "3d_fullres")
    cases = ctx.identifiers()
    names = ["contour", "dwce", "osc"]
    assert pc.find_missing_or_stale(ctx, names) == {n: dict.fromkeys(cases, "missing") for n in names}
    pc.precompute(ctx, names, progress=False)
    assert pc.find_missing_or_stale(ctx, names) == {n: {} for n in names}

    # one parameter of one map: all cases of that map, nothing else; the two parameter sets live side by side
    todo = pc.find_missing_or_stale(ctx, {"contour": {"iterations": 2}, "dwce": None, "osc": None})
    assert todo == {"contour": dict.fromkeys(cases, "missing"), "dwce": {}, "osc": {}}
    res = pc.precompute(ctx, {"contour": {"iterations": 2}, "dwce": None}, progress=False)
    assert res["built"] == {"contour": cases, "dwce": []}
    assert pc.find_missing_or_stale(ctx, {"contour": {"iterations": 2}}) == {"contour": {}}
    assert pc.find_missing_or_stale(ctx, ["contour"]) == {"contour": {}}

    # one segmentation rewritten with the same content: nothing stale, the new stat is remembered
    _rewrite_seg(ctx, cases[1], change_voxel=False)
    assert pc.find_missing_or_stale(ctx, ["dwce", "osc"]) == {"dwce": {}, "osc": {}}
    res = pc.precompute(ctx, ["dwce", "osc"], progress=False)
    assert res["built"] == {"dwce": [], "osc": []}
    st = os.stat(os.path.join(ctx.folder, cases[1] + "_seg.b2nd"))
    assert pc.read_manifest(ctx.folder)["cases"][cases[1]]["seg"]["mtime_ns"] == st.st_mtime_ns

    # one segmentation changed: exactly that case, for every map
    _rewrite_seg(ctx, cases[2], change_voxel=True)
    todo = pc.find_missing_or_stale(ctx, {"contour": {"iterations": 2}, "dwce": None, "osc": None})
    assert todo == {n: {cases[2]: "stale (segmentation changed)"} for n in names}
    res = pc.precompute(ctx, ["dwce"], progress=False)
    assert res["built"] == {"dwce": [cases[2]]}
    # the contour and osc maps of that case were built from the old segmentation: dropped, not reused
    todo = pc.find_missing_or_stale(ctx, {"contour": {"iterations": 2}, "dwce": None, "osc": None})
    assert todo == {"contour": {cases[2]: "missing"}, "dwce": {}, "osc": {cases[2]: "missing"}}
    with pytest.raises(pc.MapFileError, match="missing"):
        pc.load_map(ctx.folder, cases[2], "osc")
    # --force rebuilds everything requested
    assert pc.precompute(ctx, ["dwce"], force=True, progress=False)["built"] == {"dwce": cases}
    # a case removed from the preprocessed folder loses its maps at the next run
    for suffix in (".b2nd", "_seg.b2nd", ".pkl"):
        os.remove(os.path.join(ctx.folder, cases[3] + suffix))
    pc.precompute(ctx, ["dwce"], progress=False)
    assert cases[3] not in pc.read_manifest(ctx.folder)["cases"]
    assert not [f for f in os.listdir(ctx.maps_dir) if f.startswith(cases[3])]


def test_truncated_or_corrupt_file_is_reported_by_name(root):
    ctx = ctx_for(root, LABELS_3D, "3d_fullres")
    cases = ctx.identifiers()
    pc.precompute(ctx, {"contour": {"kernel_size": 2, "iterations": 1}, "dwce": None}, progress=False)
    path = map_file(ctx, cases[0], "contour", {"kernel_size": 2, "iterations": 1})
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(pc.MapFileError) as e:
        pc.load_map(ctx.folder, cases[0], "contour")
    msg = str(e.value)
    assert path in msg and "is truncated or corrupt" in msg and "the manifest says" in msg
    # the fix command names the dataset, configuration, plans, map and its non-default parameters
    assert (f"nnunet_losses_precompute -d {LABELS_3D} -c 3d_fullres -p nnUNetPlans --maps contour "
            f"--kernel-size 2 --iterations 1") in msg
    todo = pc.find_missing_or_stale(ctx, {"contour": {"kernel_size": 2, "iterations": 1}})
    assert list(todo["contour"]) == [cases[0]] and todo["contour"][cases[0]].startswith("corrupt")
    # even if the manifest's size matched, blosc2 cannot open a truncated file
    man = pc.read_manifest(ctx.folder)
    manifest.find_entry(man, cases[0], "contour")["size"] = os.path.getsize(path)
    manifest.write_manifest(ctx, man)
    with pytest.raises(pc.MapFileError, match="checksum"):   # refused before blosc2 decodes anything
        pc.load_map(ctx.folder, cases[0], "contour")

    # same size, different bytes: the checksum of the file's bytes tells, before any decoding
    wpath = map_file(ctx, cases[1], "dwce")
    raw = bytearray(open(wpath, "rb").read())
    ok = pc.load_map(ctx.folder, cases[1], "dwce")[:]
    for i in range(len(raw) // 3, len(raw) // 3 + 64):
        raw[i] ^= 0x5A
    open(wpath, "wb").write(bytes(raw))
    with pytest.raises(pc.MapFileError, match="checksum"):
        pc.load_map(ctx.folder, cases[1], "dwce")
    for deep in (False, True):
        todo = pc.find_missing_or_stale(ctx, ["dwce"], deep=deep)
        assert list(todo["dwce"]) == [cases[1]] and todo["dwce"][cases[1]].startswith("corrupt")
    res = pc.precompute(ctx, {"contour": {"kernel_size": 2, "iterations": 1}, "dwce": None}, verify=True,
                        progress=False, log=lambda *a: None)
    assert res["built"] == {"contour": [cases[0]], "dwce": [cases[1]]}
    np.testing.assert_array_equal(pc.load_map(ctx.folder, cases[1], "dwce")[:], ok)
    assert pc.find_missing_or_stale(ctx, {"contour": {"kernel_size": 2, "iterations": 1}, "dwce": None},
                                    deep=True) == {"contour": {}, "dwce": {}}
    # a corrupt manifest is named in the error; the next run starts a new one and rebuilds
    with open(pc.manifest_path(ctx.folder), "w") as f:
        f.write('{"format": 1, "cases": {')
    with pytest.raises(pc.MapFileError, match="manifest.json is corrupt"):
        pc.load_map(ctx.folder, cases[1], "dwce")
    res = pc.precompute(ctx, ["dwce"], progress=False, log=lambda *a: None)
    assert res["built"] == {"dwce": cases}
    np.testing.assert_array_equal(pc.load_map(ctx.folder, cases[1], "dwce")[:], ok)


# ----------------------------------------------------------------------------- interruption
def _dies_while_writing(victim, after_replace):
    real = build.write_map_file

    def write(arr, path, patch_size, meta):
        if os.path.basename(path).startswith(victim):
            if after_replace:           # the file is complete under its final name, the manifest never hears of it
                real(arr, path, patch_size, meta)
            else:                       # half a file under the temporary name
                with open(f"{path}{TMP_MARK}{os.getpid()}", "wb") as f:
                    f.write(b"b2frame" + bytes(100))
            os.kill(os.getpid(), signal.SIGKILL)
        return real(arr, path, patch_size, meta)

    return write


@pytest.mark.parametrize("after_replace", [False, True])
def test_killed_worker_leaves_no_file_that_passes_as_valid(root, monkeypatch, after_replace):
    import multiprocessing as mp
    ctx = ctx_for(root, LABELS_3D, "3d_fullres")
    cases = ctx.identifiers()
    pc.precompute(ctx, ["contour"], progress=False)               # valid maps with the default parameters
    victim = cases[2]
    monkeypatch.setattr(build, "write_map_file", _dies_while_writing(victim, after_replace))
    new = {"contour": {"iterations": 3}}                          # a rebuild that gets interrupted
    with pytest.raises(RuntimeError, match="worker process died") as e:
        pc.precompute(ctx, new, num_processes=2, progress=False, mp_context=mp.get_context("fork"))
    assert f"nnunet_losses_precompute -d {LABELS_3D} -c 3d_fullres -p nnUNetPlans --maps contour --iterations 3" \
        in str(e.value)
    monkeypatch.undo()
    final = map_file(ctx, victim, "contour", new["contour"])
    assert os.path.exists(final) == after_replace                 # the new, unrecorded file
    assert victim in pc.find_missing_or_stale(ctx, new)["contour"]  # does not pass as valid
    with pytest.raises(pc.MapFileError, match=victim):
        pc.load_map(ctx.folder, victim, "contour", pc.resolve_map(ctx, "contour", new["contour"]))
    assert pc.find_missing_or_stale(ctx, ["contour"], deep=True) == {"contour": {}}  # the other set is untouched
    # the other cases are either finished (valid with the new parameters) or still to do
    todo = pc.find_missing_or_stale(ctx, new)["contour"]
    for c in cases:
        if c not in todo:
            exp = maps.class_contours(np.maximum(seg_of(ctx, c)[0], 0), 3, iterations=3, ignore_label=3)
            np.testing.assert_array_equal(stored(ctx, c, "contour", new["contour"])[1:], exp)
    # re-running finishes the job and removes the leftovers
    res = pc.precompute(ctx, new, num_processes=2, progress=False)
    assert victim in res["built"]["contour"]
    assert pc.find_missing_or_stale(ctx, new, deep=True) == {"contour": {}}
    assert not [f for f in os.listdir(ctx.maps_dir) if TMP_MARK in f]


def test_api_validation():
    with pytest.raises(ValueError, match="unknown map"):
        registry.requested(["contours"])
    with pytest.raises(ValueError, match="iterations"):
        map_kind("contour").check_params({"iterations": 0})
    with pytest.raises(ValueError, match="unknown parameter"):
        map_kind("dwce").check_params({"sigma_mm": 1})
    with pytest.raises(ValueError, match="sigma_unit"):
        map_kind("dwce").check_params({"sigma_unit": "cm"})
    assert pc.fix_command("Dataset1_A", "2d", "P", {"contour": {"element": "auto", "iterations": 6}, "dwce": None,
                                                   "osc": {"band": 2}}, verify=True) == \
        "nnunet_losses_precompute -d Dataset1_A -c 2d -p P --maps contour dwce osc --iterations 6 --element auto --osc-band 2 --verify"
    packed = pc.pack_bits(np.random.default_rng(0).random((11, 5, 6)) > 0.5)
    assert packed.shape == (2, 5, 6) and packed.dtype == np.uint8
    np.testing.assert_array_equal(pc.unpack_bits(packed, 11), np.random.default_rng(0).random((11, 5, 6)) > 0.5)
