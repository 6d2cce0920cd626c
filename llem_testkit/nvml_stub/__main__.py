"""``python -m llem_testkit.nvml_stub [DIR]``: build the stub into DIR (default build/nvml_stub)."""

import sys
from pathlib import Path

from llem_testkit.nvml_stub.build import build_stub

print(build_stub(Path(sys.argv[1] if len(sys.argv) > 1 else "build/nvml_stub")))
