import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# Trainers: repository folder trainers/ -> installed package nnunet_losses_trainers, plus a .pth file
# in site-packages that registers them with nnU-Net at start-up (see trainers/_discovery.py and
# docs/trainers.md). The .pth goes into regular wheels (build_py) and editable wheels (added to the built
# wheel file, see add_pth_to_wheel).
PTH = "nnunet_losses_trainers.pth"
PTH_CONTENT = ("import sys; exec(\"try:\\n from nnunet_losses_trainers import _discovery as _nnl_d\\n"
               "except ImportError:\\n _nnl_d = None\\nif _nnl_d is not None:\\n _nnl_d.startup()\")\n")
TRAINER_PACKAGES = ["nnunet_losses_trainers" + p[len("trainers"):] for p in find_packages(include=["trainers", "trainers.*"])]


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            with open(os.path.join(self.build_lib, PTH), "w") as f:
                f.write(PTH_CONTENT)

    def get_outputs(self, *args, **kwargs):
        extra = [] if getattr(self, "editable_mode", False) else [os.path.join(self.build_lib, PTH)]
        return list(super().get_outputs(*args, **kwargs)) + extra


def add_pth_to_wheel(path: str) -> bool:
    """Add the .pth file to a built wheel (and its RECORD) if it is not there; True if added.

    Uses only the wheel format (a zip with a RECORD of sha256 hashes), no setuptools internals, so
    a setuptools release that changes how editable wheels are assembled cannot break discovery.
    """
    import base64
    import hashlib
    import shutil
    import tempfile
    import zipfile

    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if PTH in names:
            return False
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        data = PTH_CONTENT.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        fd, tmp = tempfile.mkstemp(suffix=".whl", dir=os.path.dirname(os.path.abspath(path)))
        os.close(fd)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
            for info in zf.infolist():
                content = zf.read(info.filename)
                if info.filename == record:
                    content = content.rstrip(b"\n") + f"\n{PTH},sha256={digest},{len(data)}\n".encode()
                out.writestr(info, content)
            out.writestr(PTH, data)
    shutil.move(tmp, path)
    return True


CMDCLASS = {"build_py": BuildPyWithPth}
try:
    from setuptools.command.editable_wheel import editable_wheel

    class EditableWheelWithPth(editable_wheel):
        """The editable wheel plus the .pth that registers the trainers (post-processed wheel file)."""

        def run(self):
            dist_dir = os.path.abspath(self.dist_dir or "dist")
            before = {f: os.path.getmtime(os.path.join(dist_dir, f)) for f in os.listdir(dist_dir)} \
                if os.path.isdir(dist_dir) else {}
            super().run()
            for f in os.listdir(dist_dir):
                full = os.path.join(dist_dir, f)
                if f.endswith(".whl") and before.get(f) != os.path.getmtime(full):
                    add_pth_to_wheel(full)

    CMDCLASS["editable_wheel"] = EditableWheelWithPth
except ImportError:  # setuptools < 64: no PEP 660 editable installs (pip then runs setup.py develop)
    pass

setup(
    name="nnunet-losses",
    version="0.1.0",
    description="Class-imbalance losses (Combo, CWCD, Offset Curves, asymmetric F-beta, top-K Dice, "
    "GDL, DWCE, focal, Tversky) for nnU-Net v2",
    packages=find_packages(include=["nnunet_losses", "nnunet_losses.*"]) + TRAINER_PACKAGES,
    package_dir={"nnunet_losses_trainers": "trainers"},
    cmdclass=CMDCLASS,
    python_requires=">=3.10",
    # scipy 1.15: wilcoxon's method="exact" is honoured with ties and zeros, "asymptotic" is its name (compare tool)
    install_requires=["torch>=2.1", "numpy", "scipy>=1.15", "edt", "connected-components-3d", "tqdm", "matplotlib",
                      "pillow", "scikit-image>=0.19", "submitit>=1.5"],
    extras_require={"nnunet": ["nnunetv2>=2.8.1"]},
    entry_points={"console_scripts": ["nnunet_losses_predict=nnunet_losses.nnunet.inference.cli:main",
                                    "nnunet_losses_precompute=nnunet_losses.nnunet.maps.cli:main",
                                    "nnunet_losses_compare=nnunet_losses.nnunet.tools.compare.cli:entry_point",
                                    "nnunet_losses_convert_drive=nnunet_losses.nnunet.tools.convert_drive:entry_point",
                                    "nnunet_losses_convert_msd=nnunet_losses.nnunet.tools.convert_msd:entry_point",
                                    "nnunet_losses_demo=nnunet_losses.nnunet.tools.workflow_demo:entry_point",
                                    "nnunet_losses_study=nnunet_losses.nnunet.tools.study.cli:entry_point"]},
)
