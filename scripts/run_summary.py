"""Print a finished run's test metrics and where its files are (the end of both demo scripts).

python scripts/run_summary.py RUN_DIR "TITLE" FILE...
"""

import json
import sys
from pathlib import Path


def main(run_dir: str, title: str, files: list[str]) -> None:
    metrics = json.loads((Path(run_dir) / "test_metrics.json").read_text())
    print(f"Test metrics ({title}):")
    for key in sorted(metrics):
        print(f"  {key:<28} {metrics[key]:.4f}")
    print(f"\nRun directory: {run_dir}")
    for name in files:
        print(f"  {run_dir}/{name}")
    print(f"TensorBoard: .venv/bin/tensorboard --logdir {Path(run_dir).parent}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
