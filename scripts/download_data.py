"""Download a benchmark's data set into the layout its loader reads (logic: mtl/datasets/download.py).

    python scripts/download_data.py nyuv2|cityscapes|office31|officehome|qm9 [--root DIR] [--verify-only]
"""
import sys

from mtl.datasets.download import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
