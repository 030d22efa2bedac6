import json

import pytest

from engine.errors import InputError
from engine.train.config import Stage, TrainConfig

EXAMPLE = {
    "stages": [
        {"name": "images", "steps": 20, "size": [256, 448], "num_frames": 1, "batch_size": 8, "lr": 1e-4},
        {"name": "clips", "steps": 40, "size": "256x448", "num_frames": 17, "fps": 24, "lr": 5e-5},
    ],
    "trainable": "lora",
    "lora_rank": 8,
    "grad_accum": 2,
    "condition_dropout": 0.1,
    "checkpoint_every": 10,
    "seed": 3,
    "timestep_shift": 5.0,
    "mixed_precision": "bf16",
}


def write(tmp_path, data) -> object:
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_a_config_file_is_read_with_defaults_for_what_it_leaves_out(tmp_path):
    config = TrainConfig.from_file(write(tmp_path, EXAMPLE))
    assert config.stages[0] == Stage("images", 20, (256, 448), 1, 24.0, 8, 1e-4)
    assert config.stages[1].size == (256, 448) and config.stages[1].batch_size == 1
    assert (config.trainable, config.lora_rank, config.grad_accum, config.seed) == ("lora", 8, 2, 3)
    assert config.p_dance == 0.15 and config.motion_dropout == 0.2 and config.cache_latents
    assert config.total_steps == 60


def test_to_dict_reads_back_to_the_same_config(tmp_path):
    config = TrainConfig.from_file(write(tmp_path, EXAMPLE))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_steps_map_to_stages_in_order():
    config = TrainConfig.from_dict(EXAMPLE)
    assert [config.stage_at(s)[0] for s in (0, 19, 20, 59)] == [0, 0, 1, 1]
    assert config.stage_start(1) == 20
    with pytest.raises(ValueError):
        config.stage_at(60)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"learning_rate": 1e-4}, "unknown key(s) in config: learning_rate"),
        ({"trainable": "everything"}, "trainable must be one of"),
        ({"condition_dropout": 1.5}, "condition_dropout must be a probability"),
        ({"grad_accum": 0}, "grad_accum must be an integer of at least 1"),
        ({"checkpoint_every": True}, "checkpoint_every must be an integer"),
        ({"mixed_precision": "fp16"}, "mixed_precision must be one of"),
        ({"timestep_shift": -1}, "timestep_shift must be a positive number"),
        ({"motion_conditioning": "concatenated"}, "motion_conditioning must be one of"),
        ({"motion_pool": 0}, "motion_pool must be an integer of at least 1"),
        ({"stages": []}, "at least one stage"),
        ({"stages": [{"name": "a", "steps": 1, "size": [64, 64], "num_frames": 1, "frames": 3}]},
         "unknown key(s) in stage 1: frames"),
        ({"stages": [{"name": "a", "steps": 1, "size": "64 by 64", "num_frames": 1}]}, "invalid size"),
        ({"stages": [{"name": "a", "steps": 1, "size": [16, 64], "num_frames": 1}]}, "at least 32x32"),
        ({"stages": [{"name": "a", "steps": 0, "size": [64, 64], "num_frames": 1}]}, "stage 'a': steps"),
        ({"stages": [{"name": "a", "steps": 1, "size": [64, 64], "num_frames": 1, "lr": 0}]}, "stage 'a': lr"),
        ({"stages": [{"name": "a", "steps": 1, "size": [64, 64]}]}, "stage 1 is missing num_frames"),
    ],
)
def test_a_bad_config_is_an_input_error_naming_the_file(tmp_path, change, words):
    path = write(tmp_path, {**EXAMPLE, **change})
    with pytest.raises(InputError) as caught:
        TrainConfig.from_file(path)
    assert caught.value.path == path
    assert words in str(caught.value)


@pytest.mark.parametrize("text, words", [("{", "not valid JSON"), ("[1, 2]", "must be a JSON object"),
                                         ('{"seed": 1}', "needs 'stages'")])
def test_a_file_that_is_no_config_is_an_input_error(tmp_path, text, words):
    with pytest.raises(InputError, match=words):
        TrainConfig.from_file(write(tmp_path, text))


def test_a_missing_config_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such config file"):
        TrainConfig.from_file(tmp_path / "absent.json")
