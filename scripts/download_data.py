"""Download a benchmark's data set into the layout its loader reads (logic: datasets/download.py).

    python scripts/download_data.py nyuv2|cityscapes|office31|officehome|qm9 [--root DIR] [--verify-only]
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from datasets.download import main  # noqa: E402  (needs the path above)

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
