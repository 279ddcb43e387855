"""ci/gpu-check without a GPU: it stops at once with a summary, and its summary step computes the
issue's ratios and targets from whatever results a run left behind."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_gpu_check_without_a_gpu_stops_early_with_a_summary(tmp_path):
    from fastad.runtime import cuda_probe
    if cuda_probe.device_count():
        pytest.skip("a GPU is present: ci/gpu-check would run for minutes")
    env = dict(os.environ, OUT=str(tmp_path), GPU_CHECK_DEADLINE="120", PYTHON=sys.executable)
    res = subprocess.run(["bash", str(ROOT / "ci" / "gpu-check")], capture_output=True, text=True,
                         env=env, timeout=180)
    assert res.returncode == 3, res.stdout + res.stderr
    summary = json.loads((tmp_path / "gpu-check.json").read_text())
    assert summary["gpu"]["model"] is None and summary["tests"] == {}
    assert "env rc=3" in (tmp_path / "steps.txt").read_text()


def _row(workload, size, impl, best):
    role = "floor" if impl.startswith("floor") else "fastad" if impl == "fastad" else "other"
    return {"workload": workload, "size": size, "impl": impl, "role": role, "status": "ok", "best_s": best}


def test_summary_ratios_and_targets(tmp_path):
    (tmp_path / "env.json").write_text(json.dumps({
        "gpus": [{"name": "Test GPU", "compute_capability": "9.0", "sms": 132, "memory_gb": 80}],
        "driver": "999.1", "cuda_runtime": "13.0", "nvrtc": "13.0",
        "versions": {"cupy-cuda13x": "14.2.0", "torch": "2.11.0", "jax": "0.8.0"}}))
    rows = []
    for n in (10_000_000, 100_000_000):
        s = n / 1e7
        rows += [_row("chain", n, "fastad", 1e-3 * s), _row("chain", n, "torch eager", 2e-2 * s),
                 _row("chain", n, "torch.compile", 0.9e-3 * s), _row("chain", n, "jax jit", 2e-3 * s),
                 _row("memory", n, "fastad", 1e-3 * s), _row("memory", n, "floor: cupy copy", 0.85e-3 * s)]
    (tmp_path / "bench-all.json").write_text(json.dumps({"results": rows}))
    (tmp_path / "extras.json").write_text(json.dumps({"host_overhead": {"us_per_launch": 41.0}}))
    (tmp_path / "pytest-fixes.rc").write_text("124\n")            # a group killed before its XML
    (tmp_path / "pytest-api.xml").write_text(
        '<testsuites><testsuite><testcase classname="t" name="a"/>'
        '<testcase classname="t" name="b"><failure/></testcase></testsuite></testsuites>')
    res = subprocess.run([sys.executable, str(ROOT / "ci" / "gpu_check.py"), "summary", str(tmp_path)],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, GPU_CHECK_COMMIT="abc", GPU_CHECK_RESULTS=""))
    assert res.returncode == 0, res.stderr
    s = json.loads(next(tmp_path.glob("gpu-20*.json")).read_text())
    assert s["gpu"]["model"] == "Test GPU" and s["versions"]["torch"] == "2.11.0" and s["driver"] == "999.1"
    assert s["tests"]["fixes"]["exit_code"] == "124"
    assert s["tests"]["api"]["passed"] == 1 and s["tests"]["api"]["failed_tests"] == ["t::b"]
    r = s["bench"]["ratios"]["chain@100M"]
    assert r["torch eager/fastad"] == pytest.approx(20) and r["torch.compile/fastad"] == pytest.approx(0.9)
    t = s["bench"]["targets"]
    assert t["chain@100M vs torch eager >= 10"]["met"]
    assert not t["chain@100M vs torch.compile > 1"]["met"] and t["chain@100M vs jax jit > 1"]["met"]
    assert t["memory@100M copy-bandwidth fraction >= 0.8"]["value"] == pytest.approx(0.85)
    assert not t["host overhead us per launch <= 30"]["met"]
