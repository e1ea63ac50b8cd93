"""Loss study on an nnU-Net dataset (the nnUNetv2_dbce_study command); `python scripts/study.py --help`."""
from nnunetv2_dbce.tools.study import main

if __name__ == "__main__":
    main()
