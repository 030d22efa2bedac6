import pytest
import torch

from engine.errors import InputError
from engine.model.attention import resolve_attention
from engine.pipelines.runtime import resolve_device, resolve_dtype, resolve_runtime


def test_auto_on_a_cpu_machine():
    runtime = resolve_runtime("cpu", "auto", "auto")
    assert runtime.device == torch.device("cpu")
    assert runtime.dtype == torch.float32 and runtime.dtype_name == "fp32"
    assert runtime.attention == "sdpa"


def test_explicit_dtypes():
    cpu = torch.device("cpu")
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(InputError, match="int4") as caught:
        resolve_dtype("int4", cpu)
    assert caught.value.option == "dtype"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_cuda_without_a_gpu_is_a_clear_input_error():
    with pytest.raises(InputError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_bad_device_and_attention():
    with pytest.raises(InputError, match="tpu") as caught:
        resolve_device("tpu")
    assert caught.value.option == "device"
    with pytest.raises(InputError, match="fastest") as caught:
        resolve_attention("fastest", torch.device("cpu"))
    assert caught.value.option == "attention"
    with pytest.raises(InputError, match="needs a CUDA device|not installed"):
        resolve_attention("xformers", torch.device("cpu"))
