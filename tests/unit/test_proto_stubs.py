"""The committed stubs in rpc/v1 must match proto/ (regenerate with `make proto`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date(tmp_path: Path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "proto/rpc/v1/admin.proto",
        ],
        cwd=ROOT,
        check=True,
    )
    for name in ("admin_pb2.py", "admin_pb2_grpc.py", "admin_pb2.pyi"):
        fresh = (tmp_path / "rpc" / "v1" / name).read_text()
        committed = (ROOT / "rpc" / "v1" / name).read_text()
        assert committed == fresh, f"rpc/v1/{name} is stale: run `make proto` and commit the result"
