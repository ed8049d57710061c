"""The wire-variation property (``tests/pipelines/test_wire_variations.py``) with many more
examples than the suite runs: acknowledged requests are stored as protobuf parsed them,
refused ones get a message.

    .venv/bin/python bench/ingest/wire_variations.py --examples 3000 --seed 7

Prints hypothesis' statistics (examples run, time per example) and pytest's verdict.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    environment = {**os.environ, "OBSLOOP_WIRE_EXAMPLES": str(args.examples), "OBSLOOP_WIRE_SEED": str(args.seed)}
    command = [sys.executable, "-m", "pytest", "tests/pipelines/test_wire_variations.py", "-q",
               "-p", "no:cacheprovider", "--hypothesis-show-statistics"]
    sys.exit(subprocess.run(command, cwd=ROOT, env=environment, check=False).returncode)


if __name__ == "__main__":
    main()
