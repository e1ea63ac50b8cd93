"""Convert Kvasir-SEG (JPEG images, PNG 0/1 masks) into an nnU-Net raw dataset of PNGs (2D, RGB).

    python scripts/convert_kvasir.py [--source ../shared/data/kvasir_seg_256] [--id 501] [--raw $nnUNet_raw]

Writes ``Dataset<id>_KvasirSEG/{imagesTr/<case>_0000.png, labelsTr/<case>.png, dataset.json}`` under
``--raw``: images decoded from JPEG and stored losslessly as RGB PNG (nnU-Net reads PNG, not JPEG; one
file per case with channels R, G, B), masks checked to hold only 0 and 1. The source is only read.
Then: ``nnUNetv2_plan_and_preprocess -d <id> -c 2d``.
"""
import argparse
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "kvasir_seg_256"


def convert(source: Path, raw: Path, dataset_id: int, num_cases=None) -> Path:
    """Write the nnU-Net raw dataset; return its folder. ``num_cases`` keeps the first cases (sorted ids)."""
    images = sorted((source / "images").glob("*.jpg"))[:num_cases]
    if not images:
        raise SystemExit(f"no images/*.jpg in {source}")
    target = raw / f"Dataset{dataset_id:03d}_KvasirSEG"
    (target / "imagesTr").mkdir(parents=True, exist_ok=True)
    (target / "labelsTr").mkdir(exist_ok=True)
    for image_path in images:
        case = image_path.stem
        mask_path = source / "masks" / f"{case}.png"
        if not mask_path.is_file():
            raise SystemExit(f"no mask for {case}: {mask_path}")
        mask = np.asarray(Image.open(mask_path))
        if mask.ndim != 2 or not np.isin(np.unique(mask), (0, 1)).all():
            raise SystemExit(f"{mask_path}: expected a single-channel 0/1 mask, got shape {mask.shape}, "
                             f"values {np.unique(mask)[:10]}")
        Image.open(image_path).convert("RGB").save(target / "imagesTr" / f"{case}_0000.png")
        Image.fromarray(mask.astype(np.uint8)).save(target / "labelsTr" / f"{case}.png")
    dataset_json = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "polyp": 1},
                    "numTraining": len(images), "file_ending": ".png", "name": "KvasirSEG",
                    "reference": "Jha et al., Kvasir-SEG, MMM 2020; Borgli et al., HyperKvasir, Sci. Data 2020",
                    "licence": "CC BY 4.0 (HyperKvasir)", "source": str(source)}
    (target / "dataset.json").write_text(json.dumps(dataset_json, indent=4))
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--raw", type=Path, default=os.environ.get("nnUNet_raw"), help="default: $nnUNet_raw")
    parser.add_argument("--id", type=int, default=501, help="nnU-Net dataset id")
    parser.add_argument("--num-cases", type=int, help="convert only the first N cases (sorted ids)")
    args = parser.parse_args()
    if args.raw is None:
        raise SystemExit("give --raw or set nnUNet_raw")
    target = convert(args.source, args.raw, args.id, args.num_cases)
    print(f"wrote {target} ({len(list((target / 'labelsTr').glob('*.png')))} cases)")


if __name__ == "__main__":
    main()
