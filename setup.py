from setuptools import find_packages, setup

setup(
    name="nnunet-losses",
    version="0.1.0",
    description="Class-imbalance losses (Combo, CWCD, Offset Curves, asymmetric F-beta, top-K Dice, "
    "GDL, DWCE, focal, Tversky) for nnU-Net v2",
    packages=find_packages(include=["nnunet_losses", "nnunet_losses.*", "trainers", "trainers.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.1", "numpy", "scipy"],
    extras_require={"nnunet": ["nnunetv2>=2.8.1"]},
)
