"""The runnable ``Examples:`` section of every public loss's docstring, run by doctest: the losses are plain
PyTorch modules, shown where people look first, and the numbers printed there stay true."""
import doctest

import pytest

import nnunet_losses as nl


def _run_examples(obj, name: str) -> doctest.TestResults:
    """Run the doctest examples of ``obj``'s own docstring (not of its methods) and return the counts."""
    runner = doctest.DocTestRunner(verbose=False)
    for test in doctest.DocTestFinder(recurse=False).find(obj, name, globs={}):
        runner.run(test, out=lambda text: None)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", nl.__all__)
def test_every_public_loss_has_a_passing_example(name):
    cls = getattr(nl, name)
    doc = cls.__doc__ or ""
    assert "\n    Examples:\n" in doc and "        >>> " in doc.split("\n    Examples:\n", 1)[1], \
        f"{name}'s docstring needs a runnable 'Examples:' section"
    result = _run_examples(cls, name)
    assert result.attempted >= 5, result
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} example lines failed"


def test_a_wrong_example_fails():
    """The check above can fail: an example whose printed value is wrong is counted as failed."""
    class Wrong:
        """Examples:
        >>> import torch
        >>> from nnunet_losses import SoftDiceLoss
        >>> round(SoftDiceLoss()(torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.long)).item(), 4)
        0.1234
        """

    result = _run_examples(Wrong, "Wrong")
    assert result.attempted == 3 and result.failed == 1
