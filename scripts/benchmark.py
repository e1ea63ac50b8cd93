"""All speed and memory measurements of docs/measurements.md in one run, each as ratios against nnU-Net's
own components on the same inputs:

1. weight maps vs nnU-Net's default training transforms (``benchmark_weight_maps.py``, CPU, one thread),
   plus the plot of weight-map cost against patch size and radius (``--plot``);
2. loss forward + backward and memory kept for backward vs nnU-Net's Dice+CE (``benchmark_losses.py``);
3. a whole training iteration vs nnU-Net's default trainer (``benchmark_iteration.py``).

    python scripts/benchmark.py [--device cpu|cuda] [--plot docs/weight_map_cost.png]
"""
import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="device for the loss and iteration measurements")
    parser.add_argument("--plot", default="docs/weight_map_cost.png")
    args = parser.parse_args()
    runs = [["benchmark_weight_maps.py", "--plot", args.plot],
            ["benchmark_losses.py", "--device", args.device],
            ["benchmark_iteration.py", "--device", args.device]]
    for script, *options in runs:
        print(f"\n===== {script} {' '.join(options)}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *options], check=True)


if __name__ == "__main__":
    main()
