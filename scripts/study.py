"""Loss study on an nnU-Net dataset (see nnunetv2_dbce/study.py); `python scripts/study.py --help`."""
from nnunetv2_dbce.study import main

if __name__ == "__main__":
    main()
