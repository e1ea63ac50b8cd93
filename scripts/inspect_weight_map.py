"""Weight-map inspector (see nnunetv2_dbce/inspect_weight_map.py); `python scripts/inspect_weight_map.py --help`."""
from nnunetv2_dbce.inspect_weight_map import main

if __name__ == "__main__":
    main()
