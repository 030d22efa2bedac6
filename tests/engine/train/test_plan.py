"""The memory plan of `tryon train --plan`, at the real 5B configuration, on the meta device."""

import dataclasses
import json

import pytest

from engine.errors import InputError
from engine.train.config import TrainConfig
from engine.train.plan import GIB, plan_training
from engine.train.student_config import StudentConfig

IMAGES = {"name": "images", "steps": 1, "size": [704, 1280], "num_frames": 1, "batch_size": 2, "lr": 1e-5}
CLIPS = {"name": "clips", "steps": 1, "size": [704, 1280], "num_frames": 81, "fps": 24, "batch_size": 1, "lr": 1e-5}


def teacher_config(**overrides) -> TrainConfig:
    return TrainConfig.from_dict({"stages": [IMAGES, CLIPS], "gradient_checkpointing": True, "parallel": "fsdp",
                                  **overrides})


@pytest.mark.slow
def test_the_5b_teacher_plan_shards_weights_and_checkpoints_activations():
    plan = plan_training(teacher_config(), "wan2.2-ti2v-5b", gpus=8, gpu_memory=80)
    params = plan.transformer_parameters
    assert 4.9e9 < params < 5.1e9  # Wan2.2-TI2V-5B's transformer
    assert plan.trained_parameters == params  # trainable "all"
    assert 5.5e9 < plan.frozen_parameters["text_encoder"] < 5.9e9 and 0.6e9 < plan.frozen_parameters["vae"] < 0.8e9
    images, clips = plan.stages
    assert clips.tokens == (21 + 3) * (704 // 32) * (1280 // 32)  # 81 frames: 21 latent frames, 3 conditions
    # AdamW's two float32 moments, sharded over 8 GPUs
    assert clips.optimizer == pytest.approx(params * 8 / 8 / GIB, abs=0.01)
    assert clips.parameters > params * 4 / 8 / GIB  # the shard, plus gathered bf16 blocks
    assert clips.activations > images.activations / 2 * 3  # 81 frames of 1 example > 2 images (per image ×1.5)
    assert plan.fits and clips.total < 80

    # The same run on one GPU holds everything unsharded and does not fit an 80 GB card.
    alone = plan_training(teacher_config(), "wan2.2-ti2v-5b", gpus=1, gpu_memory=80)
    assert alone.parallel == "ddp" and not alone.fits
    assert alone.stages[1].optimizer == pytest.approx(params * 8 / GIB, abs=0.01)

    # Without activation checkpointing every block keeps its activations: many times more.
    whole = plan_training(teacher_config(gradient_checkpointing=False), "wan2.2-ti2v-5b", gpus=8, gpu_memory=80)
    assert whole.stages[1].activations > 10 * clips.activations
    assert not whole.fits


@pytest.mark.slow
def test_the_5b_student_fits_eight_80gb_gpus_only_sharded_and_recomputed():
    from engine import api

    recipe = api.load_student_config("wan5b-student")
    assert recipe.parallel == "fsdp" and recipe.gradient_checkpointing
    plan = plan_training(recipe, "wan2.2-ti2v-5b", gpus=8, gpu_memory=80, kind="student")
    forcing, dmd = plan.stages
    assert plan.fits, plan.stages
    assert dmd.optimizer == pytest.approx(2 * forcing.optimizer, abs=0.02)  # the student and its critic
    assert dmd.frozen > forcing.frozen  # the teacher
    # Teacher forcing back-propagates through every chunk pass and the KV cache: more than the DMD exit steps.
    assert forcing.activations > dmd.activations
    for change in ({"gradient_checkpointing": False}, {"parallel": "ddp"}):
        other = plan_training(dataclasses.replace(recipe, **change), "wan2.2-ti2v-5b", gpus=8, gpu_memory=80,
                              kind="student")
        assert not other.fits, change
    kept = plan_training(dataclasses.replace(recipe, gradient_checkpointing=False), "wan2.2-ti2v-5b", gpus=8,
                         gpu_memory=80, kind="student")
    assert kept.stages[0].activations > 10 * forcing.activations
    assert kept.stages[0].parameters > forcing.parameters + 9  # the whole bf16 student stays gathered (10 GB)


def student_plan(window: int, checkpointing: bool, num_frames: int = 81):
    stage = {**CLIPS, "name": "tf", "phase": "teacher_forcing", "num_frames": num_frames}
    config = StudentConfig.from_dict({"stages": [stage], "window": window, "gradient_checkpointing": checkpointing})
    return plan_training(config, "wan2.2-ti2v-5b", gpus=8, gpu_memory=80, kind="student").stages[0].activations


def test_a_students_activations_grow_with_the_clip_and_the_window_it_reads():
    assert student_plan(window=2, checkpointing=False) > student_plan(window=2, checkpointing=False, num_frames=41)
    assert student_plan(window=8, checkpointing=False) > student_plan(window=2, checkpointing=False)
    assert student_plan(window=8, checkpointing=True) < student_plan(window=8, checkpointing=False) / 2


def test_a_plan_needs_gpus_and_memory():
    with pytest.raises(InputError, match="--gpus"):
        plan_training(teacher_config(), "tiny", gpus=0, gpu_memory=80)
    with pytest.raises(InputError, match="--gpu-memory"):
        plan_training(teacher_config(), "tiny", gpus=1, gpu_memory=0)


def test_the_tiny_plan_fits_and_lists_every_stage():
    config = TrainConfig.from_dict({"stages": [{**IMAGES, "size": [64, 64]}, {**CLIPS, "size": [64, 64]}]})
    plan = plan_training(config, "tiny", gpus=2, gpu_memory=1)
    assert [stage.stage for stage in plan.stages] == ["images", "clips"]
    assert plan.fits and plan.parallel == "ddp"  # the config asks for DDP
    assert json.loads(json.dumps(plan.to_dict()))["fits"] is True


def test_fsdp_refuses_lora_and_unknown_parallel_modes():
    with pytest.raises(InputError, match="fsdp"):
        TrainConfig.from_dict({"stages": [IMAGES], "parallel": "fsdp", "trainable": "lora"})
    with pytest.raises(InputError, match="parallel"):
        TrainConfig.from_dict({"stages": [IMAGES], "parallel": "zero3"})


def test_the_shipped_5b_recipes_load():
    from engine import api

    teacher = api.load_train_config("wan5b-teacher")
    assert teacher.parallel == "fsdp" and teacher.gradient_checkpointing and teacher.mixed_precision == "bf16"
    assert [(s.size, s.num_frames) for s in teacher.stages][-2:] == [((704, 1280), 81), ((704, 1152), 121)]
    assert teacher.stages[0].num_frames == 1  # images as one-frame videos first
    student = api.load_student_config("wan5b-student")
    assert student.phases == ("teacher_forcing", "dmd")
    assert (student.critic_ratio, student.critic_lr, student.guidance, student.tau) == (5, 4e-7, 3.0, 0.2)
