"""Hashes of the stored-map pipeline: of a resolved parameter set, of an array, of a file's bytes.

>>> fingerprint({"map": "contour", "params": {"iterations": 1}}) == fingerprint({"params": {"iterations": 1}, "map": "contour"})
True
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

__all__ = ["fingerprint", "array_fingerprint", "bytes_checksum"]


def fingerprint(obj) -> str:
    """Short hash (blake2b-64, hex) of a JSON-able object: the key of a resolved parameter set."""
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=8).hexdigest()


def array_fingerprint(arr: np.ndarray) -> str:
    """Content hash of an array (dtype, shape and values): blake2b-128, hex."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def bytes_checksum(data: bytes) -> str:
    """Checksum of a file's bytes: blake2b-128, hex."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()
