"""``python -m nnunet_losses_trainers [TRAINER ...]``: the options of each trainer, with their defaults."""
import sys

import nnunet_losses_trainers as T
from nnunet_losses.nnunet.training.options import ENV_VAR


def main(argv=None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(T.__all__)
    unknown = [n for n in names if n not in T.__all__]
    if unknown:
        print(f"unknown trainer(s) {unknown}; known: {', '.join(T.__all__)}", file=sys.stderr)
        return 2
    for name in names:
        cls = getattr(T, name)
        print(f"{name} ({cls.loss_class.__name__}): "
              + ", ".join(f"{k}={v!r}" for k, v in cls.tunable_options().items()))
    print(f"set with {ENV_VAR}='name=value,...' (batch_dice defaults to the plans' value)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
