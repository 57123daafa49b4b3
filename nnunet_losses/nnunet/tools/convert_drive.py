"""DRIVE (Staal et al., IEEE TMI 2004) -> nnU-Net raw dataset: ``nnunet_losses_convert_drive``.

Input: the DRIVE folder as distributed (``training/{images,1st_manual,mask}``,
``test/{images,1st_manual,2nd_manual,mask}``; ``test/`` optional, ``2nd_manual`` optional).

Output ``<nnUNet_raw>/DatasetXXX_DRIVE`` (see docs/compare.md):

- Images: one RGB PNG per case, ``imagesTr/DRIVE_021_0000.png``; nnU-Net's ``NaturalImage2DIO``
  reads it as three channels (R, G, B), declared as ``channel_names {"0": "R", "1": "G", "2": "B"}``
  in dataset.json, the layout of nnU-Net's own RGB example (Dataset120_RoadSegmentation). Chosen
  over three grey ``_0000/_0001/_0002`` files because it keeps one lossless file per image that any
  viewer opens; nnU-Net sees the same three channels either way (z-score normalised per channel).
- Labels ``labelsTr/DRIVE_021.png``: 0 background, 1 vessel (first observer), 2 = ``ignore``:
  every pixel outside the field-of-view mask, including the few annotated vessel pixels that fall
  outside it (counted in dataset.json). nnU-Net's ignore label keeps them out of the loss and out of
  the evaluation, as DRIVE's protocol evaluates inside the FOV only.
- Test images: ``imagesTs/DRIVE_001_0000.png``, first observer ``labelsTs/DRIVE_001.png``, second
  observer ``labelsTs_observer2/DRIVE_001.png`` (same encoding). ``nnunet_losses_compare`` with the
  second observer as a "prediction" gives the human agreement row.
- Case ids keep DRIVE's numbers: training 21..40 -> DRIVE_021..DRIVE_040, test 01..20 -> DRIVE_001...
"""
from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np

from .raw_dataset import check_id_free, dataset_folder_name, raw_root, staged_dataset, write_json

VESSEL, IGNORE = 1, 2


def _read(path: str, mode: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e


def _binary(path: str) -> np.ndarray:
    """A DRIVE mask as bool: grey values near 0 or near 255 only (the second observer's GIFs use 3 and 253)."""
    a = _read(path, "L")
    if np.any((a > 63) & (a < 192)):
        raise ValueError(f"{path} is not a binary mask: grey values {np.unique(a)[:10].tolist()} (expected values "
                         "near 0 and near 255 only)")
    return a > 127


def drive_label(manual: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """nnU-Net label image: vessels 1, background 0, outside the field of view the ignore label 2."""
    label = np.where(manual, VESSEL, 0).astype(np.uint8)
    label[~fov] = IGNORE
    return label


def _cases(source: str, split: str):
    """[(number, image path, mask path, manual1 path or None, manual2 path or None)] of one split."""
    folder = os.path.join(source, split)
    suffix = "training" if split == "training" else "test"
    img_dir = os.path.join(folder, "images")
    if not os.path.isdir(img_dir):
        return []
    cases = []
    for f in sorted(os.listdir(img_dir)):
        m = re.fullmatch(rf"(\d+)_{suffix}\.tiff?", f)
        if not m:
            continue
        n = m.group(1)
        paths = [os.path.join(folder, "mask", f"{n}_{suffix}_mask.gif"),
                 os.path.join(folder, "1st_manual", f"{n}_manual1.gif"),
                 os.path.join(folder, "2nd_manual", f"{n}_manual2.gif")]
        if not os.path.isfile(paths[0]):
            raise ValueError(f"field-of-view mask {paths[0]} is missing for {os.path.join(img_dir, f)}")
        if split == "training" and not os.path.isfile(paths[1]):
            raise ValueError(f"annotation {paths[1]} is missing for training image {os.path.join(img_dir, f)}")
        cases.append((int(n), os.path.join(img_dir, f), paths[0],
                      paths[1] if os.path.isfile(paths[1]) else None, paths[2] if os.path.isfile(paths[2]) else None))
    return cases


def convert_drive(source: str, dataset_id: int, output_root: str | None = None, name: str = "DRIVE",
                  progress: bool = True) -> str:
    """Convert a DRIVE folder into ``<output_root or $nnUNet_raw>/DatasetXXX_<name>``; returns that path."""
    from PIL import Image
    from tqdm import tqdm

    source = os.path.abspath(source)
    training = _cases(source, "training")
    if not training:
        raise ValueError(f"no training images found in {source}/training/images (expected NN_training.tif): "
                         "pass the DRIVE folder that holds training/ and test/")
    test = _cases(source, "test")
    root = raw_root(output_root)
    folder = dataset_folder_name(dataset_id, name)
    check_id_free(root, dataset_id)
    outside = {"training": 0, "test_observer1": 0, "test_observer2": 0}
    jobs = [("Tr", c) for c in training] + [("Ts", c) for c in test]
    with staged_dataset(root, folder) as out:
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "labelsTs_observer2"):
            os.makedirs(os.path.join(out, sub))
        for split, (n, image, mask, manual1, manual2) in tqdm(jobs, desc="DRIVE -> nnU-Net", disable=not progress):
            rgb = _read(image, "RGB")
            fov = _binary(mask)
            case = f"DRIVE_{n:03d}"
            for observer, manual, sub in ((1, manual1, "labels" + split), (2, manual2, "labelsTs_observer2")):
                if manual is None or (observer == 2 and split == "Tr"):
                    continue
                vessels = _binary(manual)
                if vessels.shape != fov.shape or rgb.shape[:2] != fov.shape:
                    raise ValueError(f"shape mismatch for case {n}: image {rgb.shape[:2]}, mask {fov.shape}, "
                                     f"annotation {vessels.shape} ({image}, {mask}, {manual})")
                key = "training" if split == "Tr" else f"test_observer{observer}"
                outside[key] += int(np.count_nonzero(vessels & ~fov))
                Image.fromarray(drive_label(vessels, fov)).save(os.path.join(out, sub, case + ".png"))
            Image.fromarray(rgb).save(os.path.join(out, f"images{split}", f"{case}_0000.png"), compress_level=1)
        write_json({
            "channel_names": {"0": "R", "1": "G", "2": "B"},
            "labels": {"background": 0, "vessel": VESSEL, "ignore": IGNORE},
            "numTraining": len(training),
            "file_ending": ".png",
            "name": name,
            "description": "DRIVE retinal vessels. One RGB PNG per case (3 channels). Label 1 = vessel (first "
                           "observer), 2 = ignore = outside the field-of-view mask. labelsTs = first observer, "
                           "labelsTs_observer2 = second observer (same encoding).",
            "reference": "Staal et al., Ridge-based vessel segmentation in color images of the retina, "
                         "IEEE TMI 23(4), 2004",
            "licence": "DRIVE terms: scientific research use; cite Staal et al. 2004",
            "converted_by": "nnunet_losses_convert_drive",
            "vessel_pixels_outside_fov_set_to_ignore": outside,
        }, os.path.join(out, "dataset.json"))
    return os.path.join(root, folder)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(prog="nnunet_losses_convert_drive", description=__doc__.split("\n\n")[0],
                                     epilog="Layout of the output: see docs/compare.md.")
    parser.add_argument("-i", "--input", required=True, help="DRIVE folder holding training/ (and test/)")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id (1..999)")
    parser.add_argument("-o", "--output-root", default=None, help="folder receiving DatasetXXX_DRIVE "
                                                                  "(default: $nnUNet_raw)")
    parser.add_argument("--name", default="DRIVE", help="dataset name (default: DRIVE)")
    args = parser.parse_args(argv)
    path = convert_drive(args.input, args.dataset_id, args.output_root, args.name)
    print(f"wrote {path}")
    return path


def entry_point():
    try:
        main()
    except ValueError as e:
        sys.exit(f"nnunet_losses_convert_drive: error: {e}")


if __name__ == "__main__":
    entry_point()
