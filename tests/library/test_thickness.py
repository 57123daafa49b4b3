"""Local thickness (nnunet_losses.morphology.thickness): widths of bars, tubes and discs worked out by hand."""
import numpy as np
import pytest

from nnunet_losses.morphology.thickness import class_masks, local_thickness, thickness_summary


@pytest.mark.parametrize("width,expected", [(1, 1), (3, 3), (5, 5), (7, 7), (2, 1), (4, 3)])
def test_bar_2d(width, expected):
    # odd widths exactly; an even width has no centre pixel: the skeleton sits one pixel off it (one less)
    m = np.zeros((40, 80), bool)
    m[10:10 + width, 5:75] = True
    assert np.median(local_thickness(m)) == expected


def test_tube_3d_and_two_objects_pooled():
    m = np.zeros((30, 30, 40), bool)
    m[5:10, 5:10, 2:38] = True      # 5 x 5 tube
    m[20:23, 20:23, 2:38] = True    # 3 x 3 tube
    t = local_thickness(m)
    assert set(np.unique(np.round(t))) >= {3.0, 5.0}
    assert 3 <= np.median(t) <= 5


def test_disc_centre_by_hand():
    yy, xx = np.mgrid[:41, :41]
    m = (yy - 20) ** 2 + (xx - 20) ** 2 <= 8 ** 2   # radius 8: 17 pixels across
    t = local_thickness(m)
    # the nearest outside pixel of the centre is (8, 1) away (64 + 1 > 64): 2 * sqrt(65) - 1, two less
    # than the 17 pixels across: round structures read up to 2 voxels thinner than straight ones
    assert t.max() == pytest.approx(2 * np.sqrt(65) - 1, rel=1e-6)


def test_empty_and_per_slice():
    assert local_thickness(np.zeros((8, 8), bool)).size == 0
    stack = np.zeros((3, 30, 40), bool)
    stack[0, 10:13, 5:35] = True      # slice 0: bar 3 wide
    stack[2, 10:11, 5:35] = True      # slice 2: bar 1 wide
    t = local_thickness(stack, per_slice=True)
    assert sorted(set(t.tolist())) == [1.0, 3.0]
    # the same stack as one 3D volume: slices 0 and 2 are sheets one voxel thick
    assert set(local_thickness(stack).tolist()) == {1.0}
    with pytest.raises(ValueError, match="2D or 3D"):
        local_thickness(np.zeros(5, bool))


def test_class_masks_labels_and_regions():
    lab = np.array([[0, 1, 2], [2, 2, 1]])
    a, b, r = class_masks(lab, [1, 2, [1, 2]])
    assert a.tolist() == [[0, 1, 0], [0, 0, 1]] and b.sum() == 3 and r.sum() == 5


def test_summary():
    s = thickness_summary(np.array([1.0, 3.0, 5.0]))
    assert (s["median"], s["n"]) == (3.0, 3)
    assert thickness_summary(np.zeros(0)) == {"median": None, "p10": None, "p90": None, "n": 0}


def test_blob_that_skeletonize_removes_keeps_its_centre():
    m = np.zeros((10, 10, 10), bool)
    m[3:7, 3:7, 3:7] = True          # scikit-image's 3D skeleton of this cube is empty
    t = local_thickness(m)
    assert t.size and t.max() == 3.0  # the centre voxels are 2 from the outside: 2 * 2 - 1
