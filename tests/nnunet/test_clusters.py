"""What a cluster user meets, with nnU-Net's real commands on the tiny datasets (docs/trainers.md,
"Clusters and shared data"): interrupted precomputes, the maps lock, several parameter sets of one
map kind, a read-only nnUNet_preprocessed, a damaged thickness cache, options checked at start.

Real processes and signals: a precompute whose map computation is slowed down (``_SLOW``: the real
command with a sleep in front of each case's computation) is killed while its workers compute. The
read-only folder is a real one (``chmod a-w``); as root, the capability that ignores permissions is
dropped with ``setpriv`` (skipped, with the reason, where that is impossible).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("nnunetv2")

import nnunet_losses_trainers as T  # noqa: E402
from nnunet_losses.nnunet import maps as M  # noqa: E402
from nnunet_losses.nnunet.maps import auto_width  # noqa: E402

KEY, CONFIG = "regions2d", "2d"

#: the real nnunet_losses_precompute, each case's computation first waits SLOW_SECONDS (after writing
#: a marker file named by the computing process's PID into SLOW_MARKERS)
_SLOW = """
import os, sys, time
from nnunet_losses.nnunet.maps import build, cli
real = build.compute_map
def slow(seg, rp):
    open(os.path.join(os.environ["SLOW_MARKERS"], str(os.getpid())), "w").close()
    time.sleep(float(os.environ["SLOW_SECONDS"]))
    return real(seg, rp)
build.compute_map = slow
sys.exit(cli.main(sys.argv[1:]))
"""


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait_for(condition, seconds: float, what: str):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"waited {seconds} s for {what}")


@pytest.fixture
def data(nnunet_tiny, tmp_path):
    """A private copy of the tiny region dataset, without stored maps; returns (env, dataset folder, id)."""
    name = nnunet_tiny.datasets[KEY]
    pre = tmp_path / "pre"
    shutil.copytree(nnunet_tiny.folder(KEY), pre / name,
                    ignore=shutil.ignore_patterns("nnunet_losses_maps", "nnunet_losses_thickness_*"))
    env = nnunet_tiny.env(str(tmp_path / "results"), nnUNet_preprocessed=str(pre))
    return env, pre / name, name[7:10]


def _precompute(nnunet_tiny, did, *args):
    return [nnunet_tiny.cli("nnunet_losses_precompute"), "-d", did, "-c", CONFIG, "-p", nnunet_tiny.plans,
            "--no-progress", *args]


def _slow(nnunet_tiny, env, did, markers, seconds, *args):
    """The slowed-down real precompute, started (Popen)."""
    markers.mkdir(exist_ok=True)
    cmd = [sys.executable, "-c", _SLOW] + _precompute(nnunet_tiny, did, *args)[1:]
    return subprocess.Popen(cmd, env={**env, "SLOW_MARKERS": str(markers), "SLOW_SECONDS": str(seconds)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _end(proc, pids=()):
    """Clean-up of what a test started (also when an assertion failed half-way)."""
    for pid in [proc.pid, *pids]:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)


# ----------------------------------------------------------------------------- workers, lock
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see the worker processes")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_precompute_takes_its_workers_along_and_blocks_nobody(nnunet_tiny, data, tmp_path, sig):
    env, folder, did = data
    markers = tmp_path / "markers"
    proc = _slow(nnunet_tiny, env, did, markers, 120, "--maps", "contour", "-np", "2")
    workers = []
    try:
        _wait_for(lambda: len(os.listdir(markers)) >= 2, 90, "two workers computing")
        workers = [int(p) for p in os.listdir(markers)]
        assert proc.pid not in workers
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        _wait_for(lambda: not any(_alive(w) for w in workers), 10, f"the workers {workers} to end with their parent")
    finally:
        _end(proc, workers)
    # the next precompute is not blocked by anything the killed one left (a lock file with its PID)
    r = subprocess.run(_precompute(nnunet_tiny, did, "--maps", "contour", "-np", "2"),
                       env={**env, "NNUNET_LOSSES_LOCK_TIMEOUT": "20"}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "waiting for PID" not in r.stdout


def test_lock_waiter_names_the_holder_gives_up_after_the_timeout_and_uses_its_maps(nnunet_tiny, data, tmp_path,
                                                                                 monkeypatch):
    env, folder, did = data
    # a holder that makes no progress: the waiter gives up after NNUNET_LOSSES_LOCK_TIMEOUT with a clear error
    holder = _slow(nnunet_tiny, env, did, tmp_path / "m1", 120, "--maps", "contour", "-np", "1")
    try:
        _wait_for(lambda: os.listdir(tmp_path / "m1"), 90, "the holder to compute")
        r = subprocess.run(_precompute(nnunet_tiny, did, "--maps", "contour"),
                           env={**env, "NNUNET_LOSSES_LOCK_TIMEOUT": "2"}, capture_output=True, text=True, timeout=120)
    finally:
        _end(holder)
    assert r.returncode == 1
    assert f"waiting for PID {holder.pid}" in r.stdout
    assert "gave up waiting" in r.stderr and f"PID {holder.pid}" in r.stderr and "NNUNET_LOSSES_LOCK_TIMEOUT" in r.stderr
    # a training that waits says for which PID, and uses the maps the other process built (no second build)
    for k, v in env.items():
        if k.startswith("nnUNet"):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "maps=stored")
    tr = nnunet_tiny.trainer(T.nnUNetTrainerDWCE, KEY, CONFIG)
    tr.initialize()
    holder = _slow(nnunet_tiny, env, did, tmp_path / "m2", 1, "--maps", "dwce", "-np", "1")
    try:
        _wait_for(lambda: os.listdir(tmp_path / "m2"), 90, "the second holder to compute")
        tr.get_dataloaders()
        assert holder.wait(timeout=120) == 0
    finally:
        _end(holder)
    log = open(tr.log_file).read()
    assert f"waiting for PID {holder.pid}" in log and "computing stored maps" not in log
    assert M.find_missing_or_stale(tr._map_ctx, tr._map_request) == {"dwce": {}}


# ----------------------------------------------------------------------------- parameter sets
def test_parameter_sets_of_one_kind_live_side_by_side_and_prune(nnunet_tiny, data, monkeypatch):
    env, folder, did = data
    monkeypatch.setenv("nnUNet_preprocessed", env["nnUNet_preprocessed"])
    ctx = M.MapContext.from_ids(did, CONFIG, nnunet_tiny.plans)
    one, two = {"contour": {"iterations": 1}}, {"contour": {"iterations": 2}}
    for it in ("1", "2"):
        r = subprocess.run(_precompute(nnunet_tiny, did, "--maps", "contour", "--iterations", it, "-np", "1"), env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert M.find_missing_or_stale(ctx, one, deep=True) == {"contour": {}}   # the second run kept the first set
    assert M.find_missing_or_stale(ctx, two, deep=True) == {"contour": {}}
    cases = ctx.identifiers()
    a, b = (M.load_map(ctx.folder, cases[0], "contour", M.resolve_map(ctx, "contour", p["contour"]))[:]
            for p in (one, two))
    assert not np.array_equal(a, b)
    # --verify lists both; --prune removes the sets of the kind that the command does not ask for
    r = subprocess.run(_precompute(nnunet_tiny, did, "--maps", "contour", "--iterations", "2", "--verify"), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "all map files OK" in r.stdout
    assert "stored: contour {" in r.stdout and "[asked for]" in r.stdout and "--prune removes it" in r.stdout
    r = subprocess.run(_precompute(nnunet_tiny, did, "--maps", "contour", "--iterations", "2", "--prune"), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "removed the contour maps" in r.stdout
    assert set(M.find_missing_or_stale(ctx, one)["contour"]) == set(cases)
    assert M.find_missing_or_stale(ctx, two, deep=True) == {"contour": {}}
    assert len([f for f in os.listdir(ctx.maps_dir) if f.endswith(".b2nd")]) == len(cases)


def test_prune_keeps_the_set_a_running_training_uses(nnunet_tiny, data, tiny_trainers_dir, tmp_path, monkeypatch):
    """A real training uses dwce set A (the defaults) while a prune asks for set B (w0=5): A is kept and
    reported in use by the training's PID; once the training is gone (SIGKILL, or a normal end) prune removes A."""
    env, folder, did = data
    env = {**env, "nnUNet_extTrainer": tiny_trainers_dir, "NNUNET_LOSSES_FINAL_VALIDATION": "0", "NNUNET_LOSSES_ITERATIONS": "1"}
    monkeypatch.setenv("nnUNet_preprocessed", env["nnUNet_preprocessed"])
    ctx = M.MapContext.from_ids(did, CONFIG, nnunet_tiny.plans)
    a = {"dwce": {}}
    for extra in ([], ["--w0", "5"]):
        r = subprocess.run(_precompute(nnunet_tiny, did, "--maps", "dwce", "-np", "1", *extra), env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    train = [nnunet_tiny.cli("nnUNetv2_train"), did, CONFIG, "0", "-p", nnunet_tiny.plans, "-tr",
             "nnUNetTrainerDWCE_tiny", "-device", "cpu"]
    prune_b = _precompute(nnunet_tiny, did, "--maps", "dwce", "--w0", "5", "--prune", "--verify")
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(train, env={**env, "NNUNET_LOSSES_EPOCHS": "1000"}, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: "Epoch 0" in log.read_text() or proc.poll() is not None, 240, "the training to start")
        assert proc.poll() is None, log.read_text()[-3000:]
        r = subprocess.run(prune_b, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "kept the dwce maps" in r.stdout and f"in use by PID {proc.pid}" in r.stdout
        assert "removed the dwce maps" not in r.stdout
        assert M.find_missing_or_stale(ctx, a, deep=True) == {"dwce": {}}
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _end(proc)
    r = subprocess.run(prune_b, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "removed the dwce maps" in r.stdout and "kept" not in r.stdout, r.stdout[-2000:]
    assert set(M.find_missing_or_stale(ctx, a)["dwce"]) == set(ctx.identifiers())
    # a training that ends normally leaves no use behind
    r = subprocess.run(train, env={**env, "NNUNET_LOSSES_EPOCHS": "1"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert os.listdir(os.path.join(ctx.maps_dir, "in_use")) == []
    r = subprocess.run(prune_b, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "removed the dwce maps" in r.stdout, r.stdout[-2000:]


def test_a_use_from_another_host_counts_until_its_heartbeat_is_old(nnunet_tiny, data, monkeypatch):
    from nnunet_losses.nnunet.maps import usage
    env, folder, did = data
    monkeypatch.setenv("nnUNet_preprocessed", env["nnUNet_preprocessed"])
    ctx = M.MapContext.from_ids(did, CONFIG, nnunet_tiny.plans)
    use = usage.register_use(ctx.maps_dir, [M.resolve_map(ctx, "dwce")])
    (path,) = use.paths
    sha = M.resolve_map(ctx, "dwce").fingerprint
    assert [u["pid"] for u in usage.live_uses(ctx.maps_dir)[sha]] == [os.getpid()]
    record = json.load(open(path))
    with open(path, "w") as f:
        json.dump(dict(record, host="another-node", pid=1), f)
    assert sha in usage.live_uses(ctx.maps_dir)                      # fresh: in use
    old = time.time() - usage.STALE_AFTER_S - 60
    os.utime(path, (old, old))
    assert usage.live_uses(ctx.maps_dir) == {}                       # no heartbeat for an hour: stale
    with open(path, "w") as f:                                      # this host, a PID that has ended
        json.dump(dict(record, pid=_ended_pid()), f)
    assert usage.live_uses(ctx.maps_dir, remove_stale=True) == {} and not os.path.exists(path)
    use.release()


def _ended_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_maps_of_manifest_format_2_are_recognised_and_reused(nnunet_tiny, data, monkeypatch):
    """Format 2 (one parameter set per kind, files <case>_<kind>.b2nd): read, reused as they are."""
    env, folder, did = data
    monkeypatch.setenv("nnUNet_preprocessed", env["nnUNet_preprocessed"])
    ctx = M.MapContext.from_ids(did, CONFIG, nnunet_tiny.plans)
    M.precompute(ctx, ["dwce"], progress=False, log=lambda *a: None)
    path = M.manifest_path(ctx.folder)
    man = json.load(open(path))
    for case, c in man["cases"].items():          # the manifest and names an earlier version wrote
        (sha, e), = c["maps"]["dwce"].items()
        old = f"{case}_dwce.b2nd"
        os.rename(os.path.join(ctx.maps_dir, e["file"]), os.path.join(ctx.maps_dir, old))
        c["maps"] = {"dwce": dict(e, file=old)}
    man["format"] = 2
    with open(path, "w") as f:
        json.dump(man, f)
    logs = []
    res = M.precompute(ctx, ["dwce"], progress=False, log=logs.append, verify=True)
    assert res["built"] == {"dwce": []} and any("recognised and reused" in x for x in logs)
    case = ctx.identifiers()[0]
    assert M.load_map(ctx.folder, case, "dwce", M.resolve_map(ctx, "dwce"))[:].shape[0] == 1
    assert json.load(open(path))["format"] == M.MANIFEST_FORMAT


# ----------------------------------------------------------------------------- read-only nnUNet_preprocessed
def _unprivileged(probe_dir) -> list:
    """A command prefix under which ``probe_dir`` (read-only by its mode) cannot be written; skips if none."""
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop the capability that ignores permissions")
        prefix = [setpriv, "--inh-caps=-dac_override", "--bounding-set=-dac_override", "--"]
    r = subprocess.run(prefix + ["touch", os.path.join(probe_dir, "probe")], capture_output=True)
    if r.returncode == 0:
        pytest.skip("cannot make a folder read-only here (the file system or the capabilities ignore its mode)")
    return prefix


def _read_only(folder):
    for root, dirs, files in os.walk(folder):
        for n in dirs + files:
            os.chmod(os.path.join(root, n), 0o555 if os.path.isdir(os.path.join(root, n)) else 0o444)
    os.chmod(folder, 0o555)


def _writable_again(folder):
    for root, dirs, _ in os.walk(folder):
        os.chmod(root, 0o755)


@pytest.fixture
def read_only(nnunet_tiny, data, tiny_trainers_dir):
    """The private copy with stored contour maps, made read-only; (env, folder, id, command prefix)."""
    env, folder, did = data
    r = subprocess.run(_precompute(nnunet_tiny, did, "--maps", "contour", "--iterations", "1"), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    _read_only(folder)
    try:
        yield {**env, "nnUNet_extTrainer": tiny_trainers_dir}, folder, did, _unprivileged(str(folder))
    finally:
        _writable_again(folder)


def _tree(folder):
    return sorted((os.path.relpath(os.path.join(d, f), folder), os.stat(os.path.join(d, f)).st_mtime_ns)
                  for d, _, fs in os.walk(folder) for f in fs)


def test_read_only_preprocessed_folder(nnunet_tiny, read_only, tmp_path):
    env, folder, did, prefix = read_only
    ident = json.load(open(folder / f"{nnunet_tiny.plans}.json"))["configurations"][CONFIG]["data_identifier"]
    before = _tree(folder)

    def run(cmd, **extra):
        return subprocess.run(prefix + cmd, env={**env, **extra}, capture_output=True, text=True, timeout=300)

    # --verify of intact maps needs no write access
    r = run(_precompute(nnunet_tiny, did, "--maps", "contour", "--iterations", "1", "--verify"))
    assert r.returncode == 0 and "all map files OK" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    # missing stored maps: one clear error naming the folder, the command, NNUNET_LOSSES_MAPS_DIR and maps=online
    train = [nnunet_tiny.cli("nnUNetv2_train"), did, CONFIG, "0", "-p", nnunet_tiny.plans, "-device", "cpu"]
    r = run(train + ["-tr", "nnUNetTrainerDWCE_tiny"], NNUNET_LOSSES_EPOCHS="1", NNUNET_LOSSES_ITERATIONS="1", NNUNET_LOSSES_FINAL_VALIDATION="0")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "MapsFolderNotWritable" in out and "PermissionError" not in out
    assert str(folder / ident / "nnunet_losses_maps") in out and "cannot be written" in out
    assert f"nnunet_losses_precompute -d {folder.name}" in out and "maps=online" in out
    assert "NNUNET_LOSSES_MAPS_DIR" in out
    # "auto" width with no cache: measured in memory, training runs
    r = run(train + ["-tr", "nnUNetTrainerCWCD_tiny"], NNUNET_LOSSES_EPOCHS="1", NNUNET_LOSSES_ITERATIONS="1", NNUNET_LOSSES_FINAL_VALIDATION="0")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "measured the thickness of" in r.stdout and "in memory" in r.stdout
    # NNUNET_LOSSES_MAPS_DIR: maps and the thickness cache go to a writable folder of the user's choice
    mine = tmp_path / "mine"
    r = run(_precompute(nnunet_tiny, did, "--maps", "dwce", "osc"), NNUNET_LOSSES_MAPS_DIR=str(mine))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (mine / folder.name / f"nnunet_losses_thickness_{ident}.json").is_file()
    assert (mine / folder.name / ident / "manifest.json").is_file()
    r = run(_precompute(nnunet_tiny, did, "--maps", "dwce", "osc", "--verify"), NNUNET_LOSSES_MAPS_DIR=str(mine))
    assert r.returncode == 0 and "all map files OK" in r.stdout
    assert _tree(folder) == before                                      # nothing written, nothing touched


# ----------------------------------------------------------------------------- thickness cache
@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"[]", b"null", b"42", b'{"format": 1}'])
def test_damaged_thickness_cache_is_measured_again(nnunet_tiny, data, monkeypatch, content):
    env, folder, did = data
    monkeypatch.setenv("nnUNet_preprocessed", env["nnUNet_preprocessed"])
    ctx = M.MapContext.from_ids(did, CONFIG, nnunet_tiny.plans)
    good = auto_width.dataset_thickness(ctx)
    with open(auto_width.cache_path(ctx), "wb") as f:
        f.write(content)
    logs = []
    assert auto_width.dataset_thickness(ctx, logs.append)["classes"] == good["classes"]
    assert any("stale or unreadable, measuring again" in x for x in logs)
    assert auto_width.dataset_thickness(ctx)["fingerprint"] == good["fingerprint"]   # and written again


def test_damaged_thickness_cache_with_the_real_command(nnunet_tiny, data, monkeypatch):
    env, folder, did = data
    monkeypatch.setenv("nnUNet_preprocessed", env["nnUNet_preprocessed"])
    ctx = M.MapContext.from_ids(did, CONFIG, nnunet_tiny.plans)
    auto_width.dataset_thickness(ctx)
    with open(auto_width.cache_path(ctx), "wb") as f:
        f.write(bytes(range(256)))
    r = subprocess.run(_precompute(nnunet_tiny, did, "--maps", "contour"), env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "stale or unreadable, measuring again" in r.stdout


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("cls,key,config,options,expect", [
    ("nnUNetTrainerCWCD", "labels3d", "3d_fullres", "kernel_size=[3,3]", "kernel_size"),
    ("nnUNetTrainerFocal", "labels3d", "3d_fullres", "alpha=[0.25]", "alpha"),
    ("nnUNetTrainerCWCD", "labels3d", "3d_fullres", "contour_width=1e400", "'contour_width'"),
    ("nnUNetTrainerCWCD", "labels3d", "3d_fullres", "batch_dice=maybe", "'batch_dice'"),
])
def test_option_errors_come_before_any_file_is_written(nnunet_tiny, monkeypatch, tmp_path, cls, key, config,
                                                       options, expect):
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", options)
    tr = nnunet_tiny.trainer(getattr(T, cls), key, config)
    with pytest.raises(ValueError, match=expect) as e:
        tr.initialize()
    assert "NNUNET_LOSSES_OPTIONS" in str(e.value)
    assert not os.path.exists(os.path.join(tr.output_folder, "loss_options.json"))


@pytest.mark.parametrize("word,value", [("no", False), ("YES", True), ("0", False), ("True", True)])
def test_boolean_options_read_as_booleans(nnunet_tiny, monkeypatch, tmp_path, word, value):
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", f"batch_dice={word}")
    tr = nnunet_tiny.trainer(T.nnUNetTrainerCWCD, "labels3d", "3d_fullres")
    tr.initialize()
    record = json.load(open(os.path.join(tr.output_folder, "loss_options.json")))
    assert record["options"]["batch_dice"] is value and record["resolved"]["batch_dice"] is value


def test_bad_option_stops_nnunet_train_before_any_file(nnunet_tiny, tiny_trainers_dir, tmp_path):
    results = tmp_path / "results"
    env = nnunet_tiny.env(str(results), nnUNet_extTrainer=tiny_trainers_dir, NNUNET_LOSSES_OPTIONS="kernel_size=[3,3]")
    did = nnunet_tiny.datasets["labels3d"][7:10]
    r = subprocess.run([nnunet_tiny.cli("nnUNetv2_train"), did, "3d_fullres", "0", "-p", nnunet_tiny.plans, "-tr",
                        "nnUNetTrainerCWCD_tiny", "-device", "cpu"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "kernel_size" in r.stderr
    written = [os.path.join(d, f) for d, _, fs in os.walk(results) for f in fs]
    assert not [f for f in written if f.endswith((".json", ".pth"))], written
