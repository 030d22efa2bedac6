"""The real route's sizes come from parameter counts of the published configurations."""

import pytest

from engine.checkpoint.public.sizes import PARAMETERS, REAL_COMPONENTS, count_parameters, stage_sizes


@pytest.mark.slow
@pytest.mark.parametrize("key", list(REAL_COMPONENTS))
def test_parameter_counts_are_those_of_the_published_configurations(key):
    assert count_parameters(REAL_COMPONENTS[key]) == PARAMETERS[key]


def test_stage_memory_is_the_sum_of_its_models_and_the_largest_one_with_offloading():
    sizes = {size.stage: size for size in stage_sizes()}
    assert set(sizes) == {"edit", "i2v", "animate", "pose"}
    edit = sizes["edit"]
    assert edit.parameters == sum(v for (part, _), v in PARAMETERS.items() if part == "edit")
    assert edit.gpu_gib == pytest.approx(2 * edit.parameters / 2**30)  # all bf16
    assert edit.gpu_offload_gib == pytest.approx(2 * PARAMETERS[("edit", "transformer")] / 2**30)
    i2v = sizes["i2v"]  # its VAE stays in float32
    assert i2v.gpu_gib == pytest.approx((2 * i2v.parameters + 2 * PARAMETERS[("i2v", "vae")]) / 2**30)
    assert 35 < edit.gpu_gib < 60 and sizes["pose"].gpu_gib < 1
