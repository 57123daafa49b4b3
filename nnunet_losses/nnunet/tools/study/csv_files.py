"""The study's CSV files: read as rows of strings, written atomically with 6 significant digits for floats."""
from __future__ import annotations

import csv
import io
import os
from typing import List

from nnunet_losses._io import atomic_write_bytes

__all__ = ["read_csv", "write_csv"]


def read_csv(path: str, missing_ok: bool = False) -> List[dict]:
    """The rows of a study CSV as dicts of strings (``[]`` for a missing file with ``missing_ok``)."""
    if missing_ok and not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: str, rows: List[dict], columns: List[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_bytes(path, buf.getvalue().encode())
