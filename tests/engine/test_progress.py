import subprocess
import sys

import pytest

# torch says this once per process, so each case runs in its own interpreter
MIXED_RMS_NORM = "import torch; torch.rms_norm(torch.ones(2, 4, dtype=torch.bfloat16), (4,), torch.ones(4), 1e-6)"


def stderr_of(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_libraries_hides_torchs_bf16_rms_norm_notice(quiet: bool) -> None:
    prefix = "from engine.progress import quiet_libraries; quiet_libraries(); " if quiet else ""
    said = "Mismatch dtype between input and weight" in stderr_of(prefix + MIXED_RMS_NORM)
    assert said is not quiet
