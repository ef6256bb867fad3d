"""Benchmarks are commands that print numbers; this keeps them runnable (numbers are not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_consolidation_flat_benchmark_runs_and_writes_json(tmp_path):
    out = tmp_path / "flat.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "consolidation_flat.py"), "--small", "300",
                             "--large", "1500", "--batch-new", "60", "--repeats", "1", "--json", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "ratio large/small:" in result.stdout
    data = json.loads(out.read_text())
    assert data["large_events"] == 1500 and data["consolidation_s_small"] > 0 and data["ratio_large_over_small"] > 0
