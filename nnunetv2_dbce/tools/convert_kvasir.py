"""Convert Kvasir-SEG (polyp photographs with masks) into an nnU-Net raw dataset of PNGs (2D, RGB).

    nnUNetv2_dbce_convert_kvasir --source KVASIR_FOLDER [--id 501] [--raw $nnUNet_raw] [--size 128]

KVASIR_FOLDER holds ``images/<id>.jpg`` and ``masks/<id>.jpg`` (or ``.png``), as in ``kvasir-seg.zip`` from
https://datasets.simula.no/kvasir-seg/ (Jha et al., MMM 2020; the same images are HyperKvasir's
"segmented-images", CC BY 4.0). Writes ``Dataset<id>_KvasirSEG/{imagesTr/<case>_0000.png,
labelsTr/<case>.png, dataset.json}`` under ``--raw``: images decoded and stored losslessly as RGB PNG
(nnU-Net reads PNG, not JPEG), masks as 0/1 PNG: JPEG masks thresholded at 128 (JPEG blurs their edges),
PNG masks must hold 0/1 or 0/255. ``--size N`` resizes both to N x N (image: area averaging, mask:
nearest) for small-budget training. The source is only read. Then: ``nnUNetv2_plan_and_preprocess -d <id> -c 2d``.
"""
import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from nnunetv2_dbce.tools.cli import UserError, console_command


def read_mask(path: Path) -> np.ndarray:
    """A 0/1 uint8 mask from a JPEG (thresholded) or PNG (0/1 or 0/255) file."""
    mask = np.asarray(Image.open(path).convert("L"))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return (mask > 127).astype(np.uint8)
    values = set(np.unique(mask).tolist())
    if not (values <= {0, 1} or values <= {0, 255}):
        raise UserError(f"{path}: expected a 0/1 or 0/255 mask, got values {sorted(values)[:10]}")
    return (mask > 0).astype(np.uint8)


def convert(source: Path, raw: Path, dataset_id: int, num_cases: int | None = None,
            size: int | None = None) -> Path:
    """Write the nnU-Net raw dataset; return its folder. ``num_cases`` keeps the first cases (sorted ids)."""
    images = sorted((source / "images").glob("*.jpg"))[:num_cases]
    if not images:
        raise UserError(f"no images/*.jpg in {source}")
    target = raw / f"Dataset{dataset_id:03d}_KvasirSEG"
    (target / "imagesTr").mkdir(parents=True, exist_ok=True)
    (target / "labelsTr").mkdir(exist_ok=True)
    for image_path in images:
        case = image_path.stem
        mask_path = next((source / "masks" / f"{case}{suffix}" for suffix in (".png", ".jpg")
                          if (source / "masks" / f"{case}{suffix}").is_file()), None)
        if mask_path is None:
            raise UserError(f"no mask for {case} in {source / 'masks'} (.png or .jpg)")
        image, mask = Image.open(image_path).convert("RGB"), Image.fromarray(read_mask(mask_path))
        if image.size != mask.size:
            raise UserError(f"{case}: image {image.size} and mask {mask.size} differ in size")
        if size is not None:
            image = image.resize((size, size), Image.Resampling.BOX)
            mask = mask.resize((size, size), Image.Resampling.NEAREST)
        image.save(target / "imagesTr" / f"{case}_0000.png")
        mask.save(target / "labelsTr" / f"{case}.png")
    dataset_json = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "polyp": 1},
                    "numTraining": len(images), "file_ending": ".png", "name": "KvasirSEG",
                    "reference": "Jha et al., Kvasir-SEG, MMM 2020; Borgli et al., HyperKvasir, Sci. Data 2020",
                    "licence": "CC BY 4.0 (HyperKvasir)",
                    "conversion": f"nnUNetv2_dbce_convert_kvasir{'' if size is None else f' --size {size}'}"}
    (target / "dataset.json").write_text(json.dumps(dataset_json, indent=4))
    return target


@console_command("nnUNetv2_dbce_convert_kvasir")
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nnUNetv2_dbce_convert_kvasir", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="folder with images/ and masks/")
    parser.add_argument("--raw", type=Path, default=os.environ.get("nnUNet_raw"), help="default: $nnUNet_raw")
    parser.add_argument("--id", type=int, default=501, help="nnU-Net dataset id")
    parser.add_argument("--num-cases", type=int, help="convert only the first N cases (sorted ids)")
    parser.add_argument("--size", type=int, help="resize images and masks to SIZE x SIZE")
    args = parser.parse_args(argv)
    if args.raw is None:
        raise UserError("give --raw or set nnUNet_raw")
    target = convert(args.source, args.raw, args.id, args.num_cases, args.size)
    print(f"wrote {target} ({len(list((target / 'labelsTr').glob('*.png')))} cases)")


if __name__ == "__main__":
    main()
