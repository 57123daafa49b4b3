"""Make nnU-Net find the trainers with no manual step.

nnunetv2 (>= 2.8.1) looks for a trainer named by ``-tr`` in its own folder, then in the folders
listed in the environment variable ``nnUNet_extTrainer`` (``os.pathsep``-separated, in order;
``nnunetv2/utilities/find_objects.py``). The file ``nnunet_losses_trainers.pth``, installed into
site-packages by ``pip install`` (regular and editable), runs :func:`register` at interpreter
start-up: it APPENDS our folder :data:`EXT_DIR` to ``nnUNet_extTrainer``, after any folders the
user set, so a user's own trainer of the same name wins. Set ``NNUNET_LOSSES_NO_DISCOVERY=1`` to
switch this off.

Standard library only, and cheap: it runs in every Python process of the environment.
``python -m nnunet_losses_trainers._discovery`` prints the state and exits 1 if discovery cannot work.
"""
import importlib.util
import os
import sys

ENV_VAR = "nnUNet_extTrainer"
OPT_OUT = "NNUNET_LOSSES_NO_DISCOVERY"
EXT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_nnunet_ext")
MIN_NNUNET = "2.8.1"


def _same(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def register(environ=None) -> str:
    """Append :data:`EXT_DIR` to ``nnUNet_extTrainer`` in ``environ`` (default ``os.environ``) once.

    Returns the new value. Does nothing if ``NNUNET_LOSSES_NO_DISCOVERY`` is set to 1/true/yes.
    """
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "").strip().lower() in ("1", "true", "yes"):
        return env.get(ENV_VAR, "")
    parts = [p for p in env.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    if not any(_same(p, EXT_DIR) for p in parts):
        parts.append(EXT_DIR)
    env[ENV_VAR] = os.pathsep.join(parts)
    return env[ENV_VAR]


def nnunet_supports_ext_trainers():
    """True/False whether the installed nnunetv2 reads ``nnUNet_extTrainer``; None if not installed.

    Reads nnU-Net's source instead of importing it (this runs at start-up).
    """
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "utilities", "find_objects.py")
    try:
        with open(path, encoding="utf-8") as f:
            return ENV_VAR in f.read()
    except OSError:
        return False


def too_old_message() -> str:
    try:
        from importlib.metadata import version
        found = version("nnunetv2")
    except Exception:  # noqa: BLE001 - only for the message
        found = "unknown"
    return (f"nnunet-losses: the installed nnunetv2 ({found}) cannot load external trainers (it does not read "
            f"{ENV_VAR}), so `nnUNetv2_train ... -tr nnUNetTrainerCWCD` will not find the nnunet-losses trainers. "
            f"Upgrade nnU-Net: pip install -U 'nnunetv2>={MIN_NNUNET}'")


def startup() -> None:
    """What the .pth file runs: register, and warn on nnU-Net commands if nnunetv2 is too old."""
    register()
    argv0 = os.path.basename(sys.argv[0]) if getattr(sys, "argv", None) else ""
    if argv0.startswith("nnUNetv2_") and nnunet_supports_ext_trainers() is False:
        sys.stderr.write(too_old_message() + "\n")


def main() -> int:
    supported = nnunet_supports_ext_trainers()
    print(f"{ENV_VAR}={os.environ.get(ENV_VAR, '')!r}")
    print(f"nnunet-losses trainers folder: {EXT_DIR} (registered: "
          f"{any(_same(p, EXT_DIR) for p in os.environ.get(ENV_VAR, '').split(os.pathsep) if p.strip())})")
    if supported is None:
        print("nnunetv2 is not installed: pip install 'nnunetv2>=2.8.1'")
        return 1
    if not supported:
        print(too_old_message())
        return 1
    print("nnunetv2 supports external trainers: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
