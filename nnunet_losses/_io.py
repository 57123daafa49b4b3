"""Writing files without ever leaving a half-written one: the one atomic writer of the package.

Every JSON file the package writes (``loss_options.json``, the map manifest, shrunk plans, raw
``dataset.json`` files, compare outputs) goes through :func:`atomic_write_json`: the content is
written to a temporary file in the same folder, flushed and fsynced, then moved into place with
``os.replace`` (atomic on one file system). A crash leaves either the old file or the new one.
"""
from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["TMP_MARK", "atomic_write_bytes", "atomic_write_json"]

#: part of every temporary file name (``<target><TMP_MARK><pid>``), so leftovers can be recognised
TMP_MARK = ".tmp-"


def atomic_write_bytes(path: str, data: bytes, fsync: bool = True) -> str:
    """Write ``data`` to ``path`` through a temporary file and a rename; return ``path``."""
    tmp = f"{path}{TMP_MARK}{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_json(path: str, obj: Any, indent: int = 2, sort_keys: bool = False, fsync: bool = True) -> str:
    """Write ``obj`` as JSON (with a final newline) to ``path`` atomically; return ``path``."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n"
    return atomic_write_bytes(path, text.encode(), fsync=fsync)
