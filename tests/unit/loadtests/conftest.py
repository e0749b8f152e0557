"""loadtests/ and benchmarks/ are repository folders, not installed packages: import them from
the repository root."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
