import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# Trainers: repository folder trainers/ -> installed package nnunet_losses_trainers, plus a .pth file
# in site-packages that registers them with nnU-Net at start-up (see trainers/_discovery.py and
# docs/trainers.md). The .pth goes into regular wheels (build_py) and editable installs (editable_wheel).
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


CMDCLASS = {"build_py": BuildPyWithPth}
try:
    from setuptools.command.editable_wheel import editable_wheel

    class _StrategyWithPth:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, wheel, files, mapping):
            self.inner(wheel, files, mapping)
            wheel.writestr(PTH, PTH_CONTENT.encode())

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

    class EditableWheelWithPth(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithPth(super()._select_strategy(*args, **kwargs))

    if hasattr(editable_wheel, "_select_strategy"):
        CMDCLASS["editable_wheel"] = EditableWheelWithPth
except ImportError:  # setuptools < 64: no PEP 660 editable installs
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
    install_requires=["torch>=2.1", "numpy", "scipy", "edt", "connected-components-3d", "tqdm", "matplotlib", "pillow"],
    extras_require={"nnunet": ["nnunetv2>=2.8.1"]},
    entry_points={"console_scripts": ["nnunet_losses_predict=nnunet_losses.nnunet.inference.cli:main",
                                    "nnunet_losses_precompute=nnunet_losses.nnunet.maps.cli:main",
                                    "nnunet_losses_compare=nnunet_losses.nnunet.tools.compare.cli:entry_point",
                                    "nnunet_losses_convert_drive=nnunet_losses.nnunet.tools.convert_drive:entry_point",
                                    "nnunet_losses_convert_msd=nnunet_losses.nnunet.tools.convert_msd:entry_point",
                                    "nnunet_losses_demo=nnunet_losses.nnunet.tools.demo:entry_point"]},
)
