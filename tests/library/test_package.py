"""The package itself: lazy public names, torch-free NumPy maps, the shared structuring-element
arithmetic (nnunet_losses.morphology.elements) and the constructor documentation of every public loss."""
import ast
import inspect
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

import nnunet_losses as nl
from nnunet_losses.morphology import elements
from nnunet_losses.morphology import numpy_ops as maps
from nnunet_losses.morphology import torch_ops as morphology

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(code: str) -> None:
    """Run ``code`` in a fresh interpreter (the package as seen from the repository root)."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- lazy package
def test_numpy_maps_do_not_import_torch():
    """Preprocessing workers import the NumPy maps only: neither they nor the package may pull in torch."""
    _run("import nnunet_losses.morphology.numpy_ops, sys; assert 'torch' not in sys.modules")


def test_package_and_elements_import_neither_torch_nor_numpy():
    _run("import nnunet_losses, nnunet_losses.morphology.elements, sys; "
         "assert nnunet_losses.__version__; "
         "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)")


def test_public_names(monkeypatch):
    """Every public name loads through the package's ``__getattr__`` (its cached copy removed first)."""
    assert len(nl.__all__) == 18 and len(set(nl.__all__)) == 18
    for name in nl.__all__ + ["set_input_checks"]:
        monkeypatch.delitem(vars(nl), name, raising=False)
    for name in nl.__all__:
        cls = getattr(nl, name)
        assert inspect.isclass(cls) and issubclass(cls, torch.nn.Module) and cls.__name__ == name
        assert vars(nl)[name] is cls  # cached: later accesses skip __getattr__
    assert isinstance(nl.__version__, str)
    assert callable(nl.set_input_checks)
    listed = dir(nl)
    assert set(nl.__all__) <= set(listed) and "set_input_checks" in listed and "__version__" in listed
    with pytest.raises(AttributeError, match="no attribute 'NoSuchLoss'"):
        nl.NoSuchLoss
    monkeypatch.delitem(vars(nl), "CWCDLoss")
    from nnunet_losses import CWCDLoss, TverskyLoss
    assert CWCDLoss is nl.contour.CWCDLoss and TverskyLoss.__module__ == "nnunet_losses.fbeta"
    from nnunet_losses import morphology as m  # subpackages still import by name
    assert m.torch_ops is morphology


# ----------------------------------------------------------------------------- structuring elements
def test_anisotropic_kernel_is_one_function_re_exported():
    assert maps.anisotropic_kernel is elements.anisotropic_kernel
    assert morphology.anisotropic_kernel is elements.anisotropic_kernel
    assert maps.ANISOTROPY_THRESHOLD == morphology.ANISOTROPY_THRESHOLD == elements.ANISOTROPY_THRESHOLD == 3.0
    assert elements.anisotropic_kernel([1, 1, 1.5]) == 3
    assert elements.anisotropic_kernel((1, 1, 3.0)) == 3  # ratio 3 is not anisotropic (nnU-Net: > 3)
    assert elements.anisotropic_kernel([5.0, 0.8, 0.8]) == (1, 3, 3)
    assert elements.anisotropic_kernel([4.0, 1.0, 1.0], kernel_size=5) == (2, 5, 5)
    assert elements.anisotropic_kernel(np.array([4.0, 1.0, 1.0]), np.int64(3)) == (1, 3, 3)
    assert elements.anisotropic_kernel([4.0, 1.0, 1.0], threshold=5) == 3


@pytest.mark.parametrize("spacing", [[], [1.0, 0.0, 1.0], [1.0, -2.0], [1.0, float("nan")], [1.0, float("inf")],
                                     [True, 1.0], "1,1", 3.0, [1.0, "2"]])
def test_spacing_is_validated(spacing):
    with pytest.raises(ValueError, match="spacing"):
        elements.anisotropic_kernel(spacing)
    with pytest.raises(ValueError, match="spacing"):
        morphology.anisotropic_kernel(spacing)


@pytest.mark.parametrize("kernel_size,match", [(0, "kernel_size must be >= 1"), (-3, ">= 1"), (2.5, "whole number"),
                                               (True, "whole number"), ("3", "kernel_size must be"),
                                               ((3, 0), r"kernel_size\[1\] must be >= 1"), ((3, 3, 3), "has 3 axes"),
                                               (None, "kernel_size must be")])
def test_kernel_size_is_validated(kernel_size, match):
    with pytest.raises(ValueError, match=match):
        elements.per_axis(kernel_size, 2)
    # both implementations reject it the same way
    with pytest.raises(ValueError, match=match):
        maps.erode(np.ones((5, 5), bool), kernel_size)
    with pytest.raises(ValueError, match=match):
        morphology.erode(torch.ones((1, 1, 5, 5), dtype=torch.bool), kernel_size)


def test_anisotropic_kernel_validates_its_other_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        elements.anisotropic_kernel([1, 1], 0)
    with pytest.raises(ValueError, match="threshold"):
        elements.anisotropic_kernel([1, 1], 3, threshold=0)
    with pytest.raises(ValueError, match="not both"):
        elements.element(3, (1, 3, 3), spacing=(4, 1, 1))
    with pytest.raises(ValueError, match="2 axes"):
        elements.element(3, 3, spacing=(4, 1))
    with pytest.raises(ValueError, match="iterations"):
        elements.composed(3, -1, 2, dilation=False)
    with pytest.raises(ValueError, match="iterations"):
        elements.composed(3, 1.5, 2, dilation=False)


def test_per_axis_accepts_whole_numbers():
    assert elements.per_axis(3, 3) == (3, 3, 3)
    assert elements.per_axis(np.int64(2), 2) == (2, 2)
    assert elements.per_axis([1, 3.0, np.int32(5)], 3) == (1, 3, 5)
    assert elements.per_axis(np.array([1, 3]), 2) == (1, 3)
    assert elements.element(3, 3, spacing=(5.0, 1.0, 1.0)) == (1, 3, 3)
    assert elements.element(2, (2, 3)) == (2, 3)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_composed_element_is_scipy_iterated(k, n):
    """The box of side k applied n times is one box of side (k - 1) n + 1, anchored as SciPy (origin 0):
    erosion output i looks at inputs i - before .. i + after, so a single voxel dilates (reflected
    element) to offsets -before .. after and erodes its neighbours at offsets -after .. before."""
    side = elements.composed_side(k, n)
    before, after = elements.composed_pads(k, n, dilation=False)
    assert side == (k - 1) * n + 1 == before + after + 1
    assert elements.composed_pads(k, n, dilation=True) == (after, before)
    assert elements.composed(k, n, 2, dilation=False) == ([side, side], [(before, after)] * 2)
    img = np.zeros(25, bool)
    img[12] = True
    if n:
        ref = ndimage.binary_dilation(img, np.ones(k, bool), iterations=n)
        assert np.flatnonzero(ref).tolist() == list(range(12 - before, 12 + after + 1))
        ero = ndimage.binary_erosion(~img, np.ones(k, bool), iterations=n, border_value=1)
        assert np.flatnonzero(~ero).tolist() == list(range(12 - after, 12 + before + 1))


# ----------------------------------------------------------------------------- documentation
def _args_section(doc: str) -> dict:
    """name -> description of the ``Args:`` section of a Google/MONAI-style docstring."""
    lines = inspect.cleandoc(doc).splitlines()
    start = lines.index("Args:")
    out, name = {}, None
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break
        m = re.match(r"^    (\w+): (.*)$", line)
        if m:
            name = m.group(1)
            out[name] = m.group(2)
        elif name and line.strip():
            out[name] += " " + line.strip()
    return out


@pytest.mark.parametrize("name", nl.__all__)
def test_every_constructor_argument_is_documented_with_its_default(name):
    cls = getattr(nl, name)
    doc = cls.__doc__ or ""
    assert "Args:" in doc, f"{name} has no Args: section"
    documented = _args_section(doc)
    params = {p: v for p, v in inspect.signature(cls.__init__).parameters.items() if p != "self"}
    assert list(documented) == list(params), f"{name}: Args {list(documented)} != signature {list(params)}"
    for p, v in params.items():
        m = re.search(r"Default: ``([^`]*)``", documented[p])
        assert m, f"{name}.{p}: no 'Default: ``...``' in {documented[p]!r}"
        assert ast.literal_eval(m.group(1)) == v.default, f"{name}.{p}: documented {m.group(1)}, is {v.default!r}"
    # the formula's paper (or nnU-Net) and the specification section are cited
    assert re.search(r"(19|20)\d\d", doc) and "docs/losses.md, section 3." in doc, name
