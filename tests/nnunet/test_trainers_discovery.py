"""nnU-Net finds the trainers by name after ``pip install`` with no further step (editable and regular).

Mechanism (trainers/_discovery.py): ``nnunet_losses_trainers.pth`` in site-packages appends our
folder to ``nnUNet_extTrainer`` at interpreter start-up, after the user's own folders.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from nnunet_losses_trainers import TRAINERS, _discovery

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _py(code, env=None, python=sys.executable, args=(), timeout=300):
    e = dict(os.environ if env is None else env)
    e.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([python, *args, "-c", textwrap.dedent(code)], env=e, capture_output=True, text=True,
                          timeout=timeout)


# ----------------------------------------------------------------------------- register()
def test_register_appends_after_user_paths_once():
    env = {}
    assert _discovery.register(env) == _discovery.EXT_DIR
    env = {"nnUNet_extTrainer": os.pathsep.join(["/a", "", "/b"])}
    value = _discovery.register(env)
    assert value.split(os.pathsep) == ["/a", "/b", _discovery.EXT_DIR]
    assert _discovery.register(env) == value  # idempotent (subprocesses inherit the variable)
    env = {"nnUNet_extTrainer": "/a", "NNUNET_LOSSES_NO_DISCOVERY": "1"}
    assert _discovery.register(env) == "/a"


def test_ext_folder_holds_only_the_reexport():
    mods = sorted(f for f in os.listdir(_discovery.EXT_DIR) if f.endswith(".py") and f != "__init__.py")
    assert mods == ["nnunet_losses_trainers_for_nnunet.py"]


def test_pth_is_active_in_this_environment():
    r = _py("import os; print(os.environ['nnUNet_extTrainer'])", {**os.environ, "nnUNet_extTrainer": "/user/own"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().split(os.pathsep) == ["/user/own", _discovery.EXT_DIR]


def test_installed_distribution_records_the_pth():
    import sysconfig
    from importlib.metadata import distributions

    dists = [d for d in distributions(path=[sysconfig.get_paths()["purelib"]])
             if d.metadata["Name"].replace("_", "-").lower() == "nnunet-losses"]
    if not dists:
        pytest.skip("nnunet-losses is not installed in this interpreter's site-packages")
    files = [str(f) for f in (dists[0].files or [])]
    assert "nnunet_losses_trainers.pth" in files, "pip uninstall would leave the .pth behind"


# ----------------------------------------------------------------------------- nnU-Net's own lookup
def test_nnunet_finds_every_trainer_and_user_trainers_win(tmp_path):
    pytest.importorskip("nnunetv2")
    user = tmp_path / "user_trainers"
    user.mkdir()
    (user / "my_trainers.py").write_text(textwrap.dedent("""
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        class nnUNetTrainerCombo(nnUNetTrainer):  # the user's own trainer of the same name
            users_own = True

        class nnUNetTrainerMine(nnUNetTrainer):
            pass
    """))
    r = _py(f"""
        import nnunet_losses_trainers as T
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
        for name in {sorted(TRAINERS)!r}:
            cls = find(name)
            if name == "nnUNetTrainerCombo":
                assert getattr(cls, "users_own", False), "the user's trainer must win"
            else:
                assert cls is getattr(T, name), (name, cls.__module__)
        assert find("nnUNetTrainerMine").__name__ == "nnUNetTrainerMine"
        print("OK")
    """, {**os.environ, "nnUNet_extTrainer": str(user)})
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


def test_discovery_check_command():
    r = subprocess.run([sys.executable, "-m", "nnunet_losses_trainers._discovery"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout


def test_too_old_nnunet_gives_a_clear_message(tmp_path):
    fake = tmp_path / "fake" / "nnunetv2"
    (fake / "utilities").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "utilities" / "find_objects.py").write_text("# an old nnU-Net: trainers only in its own folder\n")
    script = tmp_path / "nnUNetv2_train"
    script.write_text("print('ran')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake")}
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert "ran" in r.stdout
    assert "cannot load external trainers" in r.stderr and "pip install -U 'nnunetv2>=" in r.stderr
    ok = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)  # the real nnU-Net
    assert "cannot load" not in ok.stderr


# ----------------------------------------------------------------------------- a regular (non-editable) install
@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src") / "nnunet-losses"
    # build from a copy: never write build/ or egg-info into the working tree
    import shutil
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                            ".pytest_cache"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                        str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (whl,) = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".whl")]
    return whl


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "nnunet_losses_trainers.pth" in names
    assert "nnunet_losses_trainers/_nnunet_ext/nnunet_losses_trainers_for_nnunet.py" in names
    assert "nnunet_losses_trainers/cwcd.py" in names and "nnunet_losses/nnunet/training/trainer_base.py" in names
    assert not [n for n in names if n.startswith("trainers/")], "no top-level 'trainers' package"


def test_regular_install_in_a_fresh_venv(wheel, tmp_path):
    """pip install (not editable) into a new venv; nnU-Net and torch come from this environment
    through a plain path entry (its .pth files, including our editable one, are not processed)."""
    pytest.importorskip("nnunetv2")
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    site = _py("import sysconfig; print(sysconfig.get_paths()['purelib'])", python=py).stdout.strip()
    assert os.path.isfile(os.path.join(site, "nnunet_losses_trainers.pth"))
    with open(os.path.join(site, "zz_host_env.pth"), "w") as f:  # makes nnunetv2/torch importable, after ours
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    r = _py(f"""
        import os, sys
        import nnunet_losses_trainers as T
        assert T.__file__.startswith({site!r}), T.__file__
        assert os.environ["nnUNet_extTrainer"].split(os.pathsep) == ["/user/own", T._discovery.EXT_DIR]
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
        cls = find("nnUNetTrainerCWCD")
        assert cls is T.nnUNetTrainerCWCD and cls.__module__ == "nnunet_losses_trainers.cwcd"
        print("OK")
    """, {**os.environ, "nnUNet_extTrainer": "/user/own"}, python=py)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


# ----------------------------------------------------------------------------- the hook in editable wheels
def _copy_project(dst):
    for name in ("setup.py", "nnunet_losses", "trainers"):
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dst, name), ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)


def test_setup_uses_no_private_setuptools_api():
    """The hook must survive setuptools releases: setup.py touches no private attribute."""
    import ast
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    private = sorted({n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                      and n.attr.startswith("_") and not n.attr.startswith("__")})
    assert private == [], private


def test_editable_wheel_carries_the_hook(tmp_path):
    """PEP 660 editable wheel (what ``pip install -e .`` builds) holds the .pth with a correct RECORD entry."""
    import base64
    import hashlib

    proj = tmp_path / "proj"
    proj.mkdir()
    _copy_project(str(proj))
    out = tmp_path / "out"
    out.mkdir()
    code = "import sys, setuptools.build_meta as b; print(b.build_editable(sys.argv[1]))"
    r = subprocess.run([sys.executable, "-c", code, str(out)], cwd=str(proj), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    whl = out / r.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(whl) as zf:
        names = zf.namelist()
        assert "nnunet_losses_trainers.pth" in names
        data = zf.read("nnunet_losses_trainers.pth")
        record = zf.read(next(n for n in names if n.endswith("RECORD"))).decode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert f"nnunet_losses_trainers.pth,sha256={digest},{len(data)}" in record.splitlines()
    assert b"_discovery" in data and b"startup()" in data
