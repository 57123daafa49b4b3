"""3D NIfTI datasets -> nnU-Net raw dataset: ``nnunet_losses_convert_msd``.

Two source layouts:

- MSD layout (``TaskXX_Name/`` with ``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``imagesTs/``):
  handed to nnU-Net's own converter (``nnunetv2.dataset_conversion.convert_MSD_dataset``, the code
  behind ``nnUNetv2_convert_MSD_dataset``), which splits 4D images into one file per channel and
  rewrites dataset.json. We only add checks with clear messages and build into a staging folder
  that is renamed into place when complete.
- Flat layout (``images/NAME.nii.gz`` + ``labels/NAME.nii.gz``, e.g. the shared Hippocampus copy of
  MSD Task04): images go through nnU-Net's ``split_4d_nifti`` (a copy for 3D, a split for 4D),
  labels are checked (same grid as the image, integer values in the label range) and written as
  uint8 with the image's geometry (some copies store labels as float32). Label and channel names
  come from ``--labels`` / ``--channels``; for a folder named Hippocampus the defaults are those of
  MSD Task04 (background, Anterior, Posterior; channel MRI).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np

from .raw_dataset import check_id_free, dataset_folder_name, raw_root, staged_dataset, write_json

# MSD Task04_Hippocampus dataset.json (Simpson et al. 2019, CC-BY-SA 4.0)
HIPPOCAMPUS = {"labels": ["background", "Anterior", "Posterior"], "channels": ["MRI"],
               "reference": "Medical Segmentation Decathlon, Task04 Hippocampus (Simpson et al. 2019, "
                            "Vanderbilt University Medical Center)",
               "licence": "CC-BY-SA 4.0"}
NII = ".nii.gz"


def _msd_layout(source: str) -> bool:
    return os.path.isfile(os.path.join(source, "dataset.json")) and os.path.isdir(os.path.join(source, "imagesTr"))


def _convert_msd_layout(source: str, dataset_id: int, root: str, num_processes: int) -> str:
    import nnunetv2.dataset_conversion.convert_MSD_dataset as msd

    base = os.path.basename(source)
    m = re.fullmatch(r"Task(\d+)_([A-Za-z0-9-]+)", base)
    if not m:
        raise ValueError(f"an MSD folder must be named TaskXX_Name (nnU-Net's converter reads the name from it, "
                         f"no '_' inside Name); got {base!r}")
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        if not os.path.isdir(os.path.join(source, sub)):
            raise ValueError(f"{os.path.join(source, sub)} is missing: nnU-Net's MSD converter needs imagesTr, "
                             "labelsTr and imagesTs (imagesTs may be empty)")
    with open(os.path.join(source, "dataset.json")) as f:
        meta = json.load(f)
    for key in ("labels", "modality"):
        if key not in meta:
            raise ValueError(f"{source}/dataset.json has no {key!r}: not an MSD dataset.json")
    folder = dataset_folder_name(dataset_id, m.group(2))
    check_id_free(root, dataset_id)
    with staged_dataset(root, folder) as out:
        tmp_root = os.path.join(out, ".nnunet")  # nnU-Net writes <its nnUNet_raw>/DatasetXXX_Name
        os.makedirs(tmp_root)
        saved = msd.nnUNet_raw
        msd.nnUNet_raw = tmp_root
        try:
            msd.convert_msd_dataset(source, overwrite_target_id=dataset_id, num_processes=num_processes)
        finally:
            msd.nnUNet_raw = saved
        produced = os.path.join(tmp_root, folder)
        for entry in os.listdir(produced):
            os.rename(os.path.join(produced, entry), os.path.join(out, entry))
        os.rmdir(produced)
        os.rmdir(tmp_root)
    return os.path.join(root, folder)


def _check_label(label: np.ndarray, n_labels: int, path: str) -> np.ndarray:
    if not np.all(np.isfinite(label)) or not np.all(label == np.round(label)):
        raise ValueError(f"{path}: labels must be integers")
    if label.min() < 0 or label.max() >= n_labels:
        raise ValueError(f"{path}: label values {np.unique(label).tolist()} outside 0..{n_labels - 1} "
                         f"({n_labels} label names given; pass --labels with one name per value)")
    return label.astype(np.uint8)


def _convert_flat_layout(source: str, dataset_id: int, root: str, name: str, labels, channels,
                         progress: bool) -> str:
    import SimpleITK as sitk
    from nnunetv2.dataset_conversion.convert_MSD_dataset import split_4d_nifti
    from tqdm import tqdm

    img_dir, lab_dir = os.path.join(source, "images"), os.path.join(source, "labels")
    cases = sorted(f[: -len(NII)] for f in os.listdir(img_dir) if f.endswith(NII) and not f.startswith((".", "_")))
    if not cases:
        raise ValueError(f"no {NII} images in {img_dir}")
    missing = [c for c in cases if not os.path.isfile(os.path.join(lab_dir, c + NII))]
    if missing:
        raise ValueError(f"{len(missing)} images have no label in {lab_dir} (first: {missing[0]}{NII})")
    preset = HIPPOCAMPUS if os.path.basename(source).lower() == "hippocampus" else {}
    labels = list(labels or preset.get("labels") or [])
    channels = list(channels or preset.get("channels") or ["image"])
    if not labels:
        raise ValueError("pass --labels with one name per label value, starting with background "
                         "(e.g. --labels background liver tumour)")
    if labels[0] != "background":
        raise ValueError(f"the first label name must be 'background' (value 0), got {labels[0]!r}")
    folder = dataset_folder_name(dataset_id, name)
    check_id_free(root, dataset_id)
    with staged_dataset(root, folder) as out:
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            os.makedirs(os.path.join(out, sub))
        for case in tqdm(cases, desc=f"{name} -> nnU-Net", disable=not progress):
            img_path, lab_path = os.path.join(img_dir, case + NII), os.path.join(lab_dir, case + NII)
            reader = sitk.ImageFileReader()
            reader.SetFileName(img_path)
            reader.ReadImageInformation()
            n_channels = reader.GetSize()[3] if reader.GetDimension() == 4 else 1
            if n_channels != len(channels):
                raise ValueError(f"{img_path} has {n_channels} channel(s) but {len(channels)} channel name(s) were "
                                 f"given: pass --channels with one name per channel")
            lab = sitk.ReadImage(lab_path)
            ndim = lab.GetDimension()
            geometry_ok = (tuple(reader.GetSize()[:ndim]) == lab.GetSize()
                           and np.allclose(reader.GetSpacing()[:ndim], lab.GetSpacing(), rtol=1e-4)
                           and np.allclose(reader.GetOrigin()[:ndim], lab.GetOrigin(), atol=1e-3))
            if not geometry_ok:
                raise ValueError(f"image and label are not on the same grid for {case}: size {reader.GetSize()} vs "
                                 f"{lab.GetSize()}, spacing {reader.GetSpacing()} vs {lab.GetSpacing()}, origin "
                                 f"{reader.GetOrigin()} vs {lab.GetOrigin()}")
            arr = _check_label(sitk.GetArrayFromImage(lab), len(labels), lab_path)
            out_lab = sitk.GetImageFromArray(arr)
            out_lab.CopyInformation(lab)
            sitk.WriteImage(out_lab, os.path.join(out, "labelsTr", case + NII), useCompression=True)
            split_4d_nifti(img_path, os.path.join(out, "imagesTr"))
        meta = {
            "channel_names": {str(i): c for i, c in enumerate(channels)},
            "labels": {n: i for i, n in enumerate(labels)},
            "numTraining": len(cases),
            "file_ending": NII,
            "name": name,
            "converted_by": "nnunet_losses_convert_msd",
        }
        meta.update({k: preset[k] for k in ("reference", "licence") if k in preset})
        write_json(meta, os.path.join(out, "dataset.json"))
    return os.path.join(root, folder)


def convert_msd(source: str, dataset_id: int, output_root: str | None = None, name: str | None = None,
                labels=None, channels=None, num_processes: int = 1, progress: bool = True) -> str:
    """Convert an MSD-layout or flat-layout folder (module docstring); returns the new dataset's path."""
    source = os.path.abspath(source.rstrip("/\\"))
    if not os.path.isdir(source):
        raise ValueError(f"{source} is not a folder")
    root = raw_root(output_root)
    if _msd_layout(source):
        if name is not None or labels or channels:
            raise ValueError("--name, --labels and --channels apply to the flat layout only: an MSD folder brings "
                             "its own dataset.json and name (TaskXX_Name)")
        return _convert_msd_layout(source, dataset_id, root, num_processes)
    if os.path.isdir(os.path.join(source, "images")) and os.path.isdir(os.path.join(source, "labels")):
        return _convert_flat_layout(source, dataset_id, root, name or os.path.basename(source), labels, channels,
                                    progress)
    raise ValueError(f"{source} is neither an MSD folder (dataset.json + imagesTr/ + labelsTr/ + imagesTs/) nor a "
                     "flat folder (images/ + labels/ with the same file names)")


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(prog="nnunet_losses_convert_msd", description=__doc__.split("\n\n")[0],
                                     epilog="Layouts: see docs/compare.md.")
    parser.add_argument("-i", "--input", required=True, help="MSD TaskXX_Name folder, or a folder with images/ "
                                                             "and labels/")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id (1..999)")
    parser.add_argument("-o", "--output-root", default=None, help="folder receiving DatasetXXX_Name "
                                                                  "(default: $nnUNet_raw)")
    parser.add_argument("--name", default=None, help="flat layout: dataset name (default: the folder's name)")
    parser.add_argument("--labels", nargs="+", default=None, help="flat layout: label names for values 0, 1, ... "
                                                                  "(first: background)")
    parser.add_argument("--channels", nargs="+", default=None, help="flat layout: channel names (default: image; "
                                                                    "names like CT select nnU-Net's normalisation)")
    parser.add_argument("-np", "--num-processes", type=int, default=1, help="MSD layout: processes for nnU-Net's "
                                                                            "converter (default 1)")
    args = parser.parse_args(argv)
    path = convert_msd(args.input, args.dataset_id, args.output_root, args.name, args.labels, args.channels,
                       args.num_processes)
    print(f"wrote {path}")
    return path


def entry_point():
    try:
        main()
    except ValueError as e:
        sys.exit(f"nnunet_losses_convert_msd: error: {e}")


if __name__ == "__main__":
    entry_point()
