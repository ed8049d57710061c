import sys
from pathlib import Path

# The helpers next to these tests (``panel_data``); the repository's own ``dashboards``
# package would shadow a ``tests.dashboards`` import path.
sys.path.insert(0, str(Path(__file__).parent))
