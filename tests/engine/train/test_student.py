"""Streaming distillation: teacher forcing on the KV-cache path, DMD with self-rollout, GR-DMD weights."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from engine.errors import InputError
from engine.model.transformer_condnet import Condition
from engine.model.distributed import Processes, start_processes
from engine.pipelines.pipeline_tryon_streaming import StreamConfig, TryOnStream
from engine.train.causal import ChunkedClip, chunk_spans, rollout, teacher_forcing_flow
from engine.train.flow import FlowBatch
from engine.train.distill import chunk_scores, dmd_loss, frame_weights, latent_frame_scores, reweight
from engine.train.loop import load_quietly
from engine.train.scorer import AestheticScorer, SharpnessColourScorer, make_scorer
from engine.train.student import StudentTrainer, filled_window, train_student
from engine.train.student_config import StudentConfig


class Stop(Exception):  # not the conftest's: torchrun runs this file as a script, where it cannot be imported
    """Raised from the progress callback: the run is killed."""


def stop_at(step: int):
    def progress(stage: str, done: int, total: int) -> None:
        if done == step:
            raise Stop
    return progress


SIZE = 32
CPU = Processes(rank=0, world_size=1, device=torch.device("cpu"), owns_group=False)


def config(teacher_forcing: int = 0, dmd: int = 0, num_frames: int = 5, batch_size: int = 1, lr: float = 3e-3,
           **changes) -> StudentConfig:
    """Teacher-forcing then DMD stages at 32x32 over two synthetic examples, chunks of one latent frame."""
    stage = {"size": [SIZE, SIZE], "num_frames": num_frames, "fps": 8.0, "batch_size": batch_size, "lr": lr}
    stages = [{"name": "tf", "phase": "teacher_forcing", "steps": teacher_forcing, **stage},
              {"name": "dmd", "phase": "dmd", "steps": dmd, **stage}]
    return StudentConfig.from_dict({
        "stages": [s for s in stages if s["steps"]], "synthetic_examples": 2, "log_every": 1,
        "checkpoint_every": 1000, "chunk_frames": 1, "steps_per_chunk": 2, "window": 2, "guidance": 3.0, **changes,
    })


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def weights_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if not torch.equal(before[name], after[name])}


def image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def conditioned(tiny_checkpoint):
    """The tiny model with non-zero role and motion embeddings (as if trained), so conditions matter."""
    model = load_quietly(tiny_checkpoint)
    torch.manual_seed(0)
    transformer = model.pipeline.transformer
    torch.nn.init.normal_(transformer.role_embedding.weight, std=1.0)
    torch.nn.init.normal_(transformer.motion_embedding.weight, std=0.1)
    return model.pipeline


def streaming_generator(pipeline, window: int, seed: int = 0) -> TryOnStream:
    motion = np.random.default_rng(5).integers(0, 255, (17, SIZE, SIZE, 3), dtype=np.uint8)  # 5 latent frames
    return TryOnStream(pipeline, reference=image(0), garments=[("top", image(1))], prompt="she spins",
                              generator=torch.Generator().manual_seed(seed), motion=motion,
                              config=StreamConfig(chunk_frames=1, steps=2, window=window))


def chunked_clip(pipeline, stream: TryOnStream) -> ChunkedClip:
    transformer = pipeline.transformer
    return ChunkedClip(transformer, transformer, text=stream.runner.text, conditions=[stream.reference, *stream.garments],
                       motion=pipeline.encode_frames(stream.motion.frames), latent_size=(stream.shape.latent_height, stream.shape.latent_width),
                       chunk_frames=stream.config.chunk_frames, window=stream.config.window)


# -- phase 1: teacher forcing -----------------------------------------------------------------


def test_teacher_forcing_forward_equals_the_streaming_engines_cached_forward(conditioned):
    """Chunk i's flow with the clean chunks before it in the cache (5 chunks, window 2: the ring wraps)."""
    stream = streaming_generator(conditioned, window=2)
    latents = torch.randn(2, 1, 48, 5, 2, 2, generator=torch.Generator().manual_seed(1))
    clean, noisy = latents[0], latents[1]
    times = torch.tensor([900.0, 700.0, 500.0, 300.0, 100.0])

    expected = []
    with torch.no_grad():
        for span in chunk_spans(5, 1):
            stream.position = span.start
            expected.append(stream.runner.predict(noisy[:, :, span], times[span.start].expand(1, 1), stream.position,
                                                  stream._motion(1)))
            stream.runner.write_chunk(clean[:, :, span], stream.position, stream._motion(1))

    transformer = conditioned.transformer
    transformer.zero_grad(set_to_none=True)
    flow = teacher_forcing_flow(chunked_clip(conditioned, stream), noisy, times[None], clean)
    torch.testing.assert_close(flow, torch.cat(expected, dim=2), atol=1e-5, rtol=1e-5)

    # Gradients reach the condition tokens through their cached keys and values: the role
    # embedding acts on nothing else.
    flow.pow(2).mean().backward()
    assert transformer.role_embedding.weight.grad.abs().sum() > 0
    transformer.zero_grad(set_to_none=True)


def test_a_rollout_is_the_streaming_generators_video(conditioned):
    stream = streaming_generator(conditioned, window=1)
    noise_source = torch.Generator().manual_seed(7)
    noise = [torch.randn(1, 48, 1, 2, 2, generator=noise_source) for _ in range(4)]
    expected = []
    with torch.no_grad():
        for number, chunk_noise in enumerate(noise):
            stream.position = number
            expected.append(stream._denoise(chunk_noise, stream._motion(1)))
            stream.runner.write_chunk(expected[-1], stream.position, stream._motion(1))
        clip = rollout(chunked_clip(conditioned, stream), torch.cat(noise, dim=2), stream.pipeline.scheduler,
                       steps=2, grad=False)
    torch.testing.assert_close(clip, torch.cat(expected, dim=2), atol=1e-5, rtol=1e-5)


def gradients(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.grad.clone() for name, param in module.named_parameters() if param.grad is not None}


@pytest.mark.parametrize("passes", ["teacher_forcing", "rollout"])
def test_activation_checkpointing_recomputes_each_chunk_on_the_cache_it_attended_to(conditioned, passes):
    """Each block is recomputed in the backward pass, after later chunks have filled the cache: the
    same flow and the same gradients as keeping every activation."""
    latents = torch.randn(2, 1, 48, 5, 2, 2, generator=torch.Generator().manual_seed(1))
    times = torch.tensor([[900.0, 700.0, 500.0, 300.0, 100.0]])
    transformer = conditioned.transformer

    def run() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clip = chunked_clip(conditioned, streaming_generator(conditioned, window=4))
        transformer.zero_grad(set_to_none=True)
        if passes == "teacher_forcing":
            out = teacher_forcing_flow(clip, latents[1], times, latents[0])
        else:
            out = rollout(clip, latents[1], conditioned.scheduler, steps=2, grad=True, sampler="renoise",
                          exit_step=1, renoise_generator=torch.Generator().manual_seed(3))
        out.pow(2).mean().backward()
        return out.detach(), gradients(transformer)

    kept, kept_grads = run()
    transformer.enable_gradient_checkpointing()
    try:
        recomputed, recomputed_grads = run()
    finally:
        transformer.disable_gradient_checkpointing()
        transformer.zero_grad(set_to_none=True)
    torch.testing.assert_close(recomputed, kept)
    assert kept_grads.keys() == recomputed_grads.keys()
    # teacher forcing back-propagates into the cached conditions; a rollout writes its cache without gradient
    assert ("role_embedding.weight" in kept_grads) == (passes == "teacher_forcing")
    for name, grad in kept_grads.items():
        torch.testing.assert_close(recomputed_grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("frames, window, streamed",
                         [(17, 5, 0), (29, 5, 1), (49, 5, 3), (81, 5, 5), (121, 5, 5), (81, 2, 2), (81, 0, 0)])
def test_a_student_streams_with_the_history_its_training_clips_filled(frames, window, streamed):
    """Chunks of 3 latent frames; 17 frames (5 latent, 2 chunks) fill only the sink; 81 frames (21 latent,
    7 chunks) fill the official window of 5."""
    recipe = StudentConfig.from_dict({"stages": [{"name": "tf", "phase": "teacher_forcing", "steps": 1,
                                                  "size": [32, 32], "num_frames": frames}], "window": window,
                                      "chunk_frames": 3})
    assert filled_window(recipe, temporal_factor=4) == streamed


def test_activation_checkpointing_needs_every_chunk_of_a_clip_in_the_window(tiny_checkpoint, tmp_path):
    # 13 frames: 4 latent frames, 4 chunks of one; the sink and a window of 1 hold only two of the three cached.
    with pytest.raises(InputError, match="4 chunks need a window of at least 2, not 1"):
        train_student(str(tiny_checkpoint), "synthetic", tmp_path / "run",
                      config(teacher_forcing=1, num_frames=13, window=1, gradient_checkpointing=True))


@pytest.mark.slow
def test_teacher_forcing_overfits_two_examples(unit_latent_checkpoint, tmp_path):
    output = train_student(str(unit_latent_checkpoint), "synthetic", tmp_path / "out",
                           config(teacher_forcing=40, num_frames=5, batch_size=2))
    lines = metrics(output)
    losses = [line["loss"] for line in lines]
    print("teacher-forcing losses:", losses)
    assert [line["phase"] for line in lines] == ["teacher_forcing"] * 40
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8]), losses


def test_block_noise_gives_each_chunk_its_own_noise_level(tiny_checkpoint, tmp_path, monkeypatch):
    from engine.train import student

    seen = []
    original = student.teacher_forcing_flow
    monkeypatch.setattr(student, "teacher_forcing_flow",
                        lambda clip, noisy, timestep, clean: seen.append(timestep) or original(clip, noisy, timestep,
                                                                                              clean))
    train_student(str(tiny_checkpoint), "synthetic", tmp_path / "blocks",
                  config(teacher_forcing=2, num_frames=9, chunk_frames=2, block_noise=True))
    train_student(str(tiny_checkpoint), "synthetic", tmp_path / "clip", config(teacher_forcing=2, num_frames=9))
    per_block, per_clip = seen[:2], seen[2:]
    for timestep in per_block:  # 3 latent frames: chunks [0, 1] and [2]
        assert timestep[0, 0] == timestep[0, 1] != timestep[0, 2]
    assert all(len(set(timestep[0].tolist())) == 1 for timestep in per_clip)


def test_block_sigmas_are_shifted_draws_constant_within_each_chunk():
    from engine.train.student import block_sigmas

    sigmas = block_sigmas(np.random.default_rng(0), frames=7, chunk_frames=3, shift=5.0)
    assert len(sigmas) == 7 and sigmas[0:3] == (sigmas[0],) * 3 and sigmas[3:6] == (sigmas[3],) * 3
    assert len({sigmas[0], sigmas[3], sigmas[6]}) == 3 and all(0 <= s < 1 for s in sigmas)
    u = np.random.default_rng(0).random(3)
    assert sigmas[0] == pytest.approx(5 * u[0] / (1 + 4 * u[0]))


def test_the_checkpoint_holds_the_ema_of_the_students_weights(tiny_checkpoint, tmp_path):
    """EMA from step 1 with decay 0.5: the saved student is the average of the weights after steps 1..3,
    the live weights are kept for resume."""
    snapshots = []
    trainer = StudentTrainer("synthetic", str(tiny_checkpoint), tmp_path / "out",
                             config(teacher_forcing=3, ema=0.5, ema_start=1), False, CPU)
    trainer.run(lambda stage, done, total: snapshots.append(weights_of(trainer.pipeline.transformer)), None)

    expected = {name: snapshots[1][name] for name in snapshots[1]}  # kept from step 1: the weights after it
    for name in expected:
        expected[name] = torch.lerp(expected[name], snapshots[2][name], 0.5)
    saved = load_file(tmp_path / "out/transformer/diffusion_pytorch_model.safetensors")
    live = weights_of(trainer.pipeline.transformer)
    assert changed(snapshots[1], live)  # training moved the weights
    for name, value in expected.items():
        torch.testing.assert_close(saved[name], value, rtol=0, atol=1e-7, msg=name)
    state = load_file(tmp_path / "out/training_state/adapter.safetensors")
    assert {name.removeprefix("live.") for name in state} == set(live)
    assert not changed({name: state["live." + name] for name in live}, live)


def test_a_resumed_run_with_ema_ends_as_an_uninterrupted_one(tiny_checkpoint, tmp_path):
    run = config(teacher_forcing=4, ema=0.5, ema_start=1, checkpoint_every=1)
    whole = train_student(str(tiny_checkpoint), "synthetic", tmp_path / "whole", run)
    with pytest.raises(Stop):
        train_student(str(tiny_checkpoint), "synthetic", tmp_path / "parts", run, progress=stop_at(4))
    parts = train_student(str(tiny_checkpoint), "synthetic", tmp_path / "parts", run, resume=True)
    for file in ("transformer/diffusion_pytorch_model.safetensors", "training_state/adapter.safetensors"):
        assert not changed(load_file(whole / file), load_file(parts / file)), file


# -- phase 2: DMD -----------------------------------------------------------------------------


@pytest.mark.parametrize("sampling", [{}, {"sampler": "renoise", "random_exit": True}], ids=["euler", "official"])
def test_one_dmd_step_changes_the_student_and_the_critic_but_never_the_teacher(tiny_checkpoint, tmp_path, sampling):
    trainer = StudentTrainer("synthetic", str(tiny_checkpoint), tmp_path / "out", config(dmd=1, **sampling), False,
                             CPU)
    teacher, critic = weights_of(trainer.teacher), weights_of(trainer.critic)
    student = weights_of(trainer.pipeline.transformer)
    assert not changed(teacher, critic) and not changed(teacher, student)  # all three start as the teacher

    trainer.run(None, None)

    assert not changed(teacher, weights_of(trainer.teacher))
    assert changed(student, weights_of(trainer.pipeline.transformer))
    assert changed(critic, weights_of(trainer.critic))
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    line = metrics(tmp_path / "out")[0]
    print("one DMD step:", line)
    assert line["phase"] == "dmd" and {"critic_loss", "dmd_loss", "reward", "weight_max"} <= line.keys()


def test_the_student_learns_only_every_critic_ratio_th_dmd_step(tiny_checkpoint, tmp_path):
    output = train_student(str(tiny_checkpoint), "synthetic", tmp_path / "out",
                           config(dmd=3, critic_ratio=2, reweight=False))
    lines = metrics(output)
    assert ["dmd_loss" in line for line in lines] == [True, False, True]
    assert all("critic_loss" in line and "reward" not in line for line in lines)


# -- GR-DMD weights ---------------------------------------------------------------------------


class LowFrame:
    """A scorer that gives every video frame 0.9, except those of latent frame `k` (0.1)."""

    name = "low-frame"

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        scores = torch.full((len(frames),), 0.9)
        first = 0 if self.k == 0 else 4 * (self.k - 1) + 1
        scores[first: 4 * self.k + 1] = 0.1
        return scores


@pytest.mark.parametrize("k", [0, 2])
def test_weights_concentrate_on_the_low_scoring_frame_and_flatten_as_tau_grows(k):
    frames = np.zeros((9, SIZE, SIZE, 3), dtype=np.uint8)  # 3 latent frames
    scores = latent_frame_scores(LowFrame(k)(frames), latent_frames=3, temporal_factor=4)
    weights = frame_weights(scores, tau=0.2)
    assert int(weights.argmax()) == k and weights[k] > 0.95 and torch.isclose(weights.sum(), torch.tensor(1.0))
    torch.testing.assert_close(frame_weights(scores, tau=1e9), torch.full((3,), 1 / 3))


def test_uniform_weights_give_the_plain_dmd_gradient():
    grad = torch.randn(1, 4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    uniform = frame_weights(torch.full((3,), 0.5), tau=0.2)
    torch.testing.assert_close(reweight(grad, uniform), grad, atol=0, rtol=1e-6)

    x = torch.randn(1, 4, 3, 2, 2, requires_grad=True)
    dmd_loss(x, reweight(grad, uniform)).backward()
    torch.testing.assert_close(x.grad, grad / x.numel())  # the surrogate's gradient is g / numel

    weights = frame_weights(torch.tensor([0.9, 0.1, 0.9]), tau=0.2)
    weighted = reweight(grad, weights)
    torch.testing.assert_close(weighted[:, :, 1], grad[:, :, 1] * weights[1] * 3)
    assert weighted[:, :, 1].abs().sum() > grad[:, :, 1].abs().sum()


def test_the_default_scorer_ranks_blurred_and_greyed_frames_below_the_original():
    from engine.synth import make_sample

    frame = make_sample(0, size=(96, 160), num_frames=1).target[0]
    blurred = np.asarray(Image.fromarray(frame).resize((24, 40)).resize((96, 160), Image.BILINEAR))
    grey = (0.5 * frame + 0.5 * frame.mean(axis=-1, keepdims=True)).astype(np.uint8)
    original, soft, washed = SharpnessColourScorer()(np.stack([frame, blurred, grey]))
    assert 1 < soft < original < 10 and 1 < washed < original, (original, soft, washed)  # the raw 1-10 scale


def test_the_aesthetic_hook_is_used_only_when_its_weights_exist(tmp_path):
    notes = []
    assert isinstance(make_scorer("auto", str(tmp_path / "none"), notes.append), SharpnessColourScorer)
    assert "no aesthetic model weights" in notes[0]
    with pytest.raises(InputError, match="aesthetic"):
        make_scorer("aesthetic", None, notes.append)

    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    tiny = CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                            image_size=32, patch_size=16, projection_dim=4)
    CLIPVisionModelWithProjection(tiny).save_pretrained(tmp_path / "aesthetic" / "clip", safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "aesthetic" / "clip")
    save_file({"layers.0.weight": torch.randn(3, 4), "layers.0.bias": torch.zeros(3),
               "layers.1.weight": torch.zeros(1, 3), "layers.1.bias": torch.full((1,), 5.0)},
              tmp_path / "aesthetic" / "head.safetensors")
    scorer = make_scorer("auto", str(tmp_path / "aesthetic"), notes.append)
    scores = scorer(np.zeros((3, 40, 24, 3), dtype=np.uint8))
    assert isinstance(scorer, AestheticScorer)
    torch.testing.assert_close(scores, torch.full((3,), 5.0))  # the head's raw score, no (s - 1) / 9 rescale


def test_gr_dmd_weights_use_the_raw_reward_scale_averaged_per_chunk():
    """On the raw 1-10 scale a chunk half a point worse takes most of the gradient at tau 0.2;
    the same scores squeezed into [0, 1] would leave the weights almost uniform."""
    latent = torch.tensor([7.0, 6.5, 6.5, 6.0, 6.0, 7.0])  # per latent frame
    per_chunk = chunk_scores(latent, chunk_frames=3)
    torch.testing.assert_close(per_chunk, torch.tensor([6.6667, 6.6667, 6.6667, 6.3333, 6.3333, 6.3333]),
                               atol=1e-4, rtol=0)
    weights = frame_weights(per_chunk, tau=0.2)
    assert weights[3] / weights[0] > 5  # e^(0.333 / 0.2) = 5.3
    squeezed = frame_weights((per_chunk - 1) / 9, tau=0.2)
    assert squeezed[3] / squeezed[0] < 1.25
    torch.testing.assert_close(chunk_scores(torch.tensor([1.0, 3.0, 5.0, 7.0]), chunk_frames=3),
                               torch.tensor([3.0, 3.0, 3.0, 7.0]))  # a shorter last chunk


@pytest.mark.parametrize("keep_garments", [True, False])
def test_the_teachers_unconditional_branch_keeps_the_reference_and_the_garments_as_configured(monkeypatch,
                                                                                               keep_garments):
    from engine.train import distill

    seen = []
    monkeypatch.setattr(distill, "predict_flow", lambda model, batch: seen.append(batch) or torch.zeros_like(batch.noisy))
    user, top = Condition("user", torch.ones(1, 4, 1, 2, 2)), Condition("top", torch.ones(1, 4, 1, 2, 2))
    batch = FlowBatch(noisy=torch.zeros(1, 4, 2, 2, 2), timestep=torch.full((1, 2), 500.0), text=torch.ones(1, 3, 8),
                      conditions=[user, top], motion=None, flow=torch.zeros(1, 4, 2, 2, 2),
                      loss_frames=torch.ones(1, 2, dtype=torch.bool))
    distill.predicted_x0(None, batch, guidance=3.0, negative_text=torch.zeros(1, 3, 8), keep_garments=keep_garments)
    conditional, unconditional = seen
    assert conditional.conditions == [user, top]
    assert unconditional.conditions == ([user, top] if keep_garments else [user])
    assert unconditional.text.abs().sum() == 0 and conditional.text.abs().sum() > 0


# -- checkpoints and resume ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def distilled(tiny_checkpoint, tmp_path_factory):
    """One uninterrupted run: 2 teacher-forcing steps, then 2 DMD steps, a checkpoint after every step."""
    output = tmp_path_factory.mktemp("student") / "whole"
    return train_student(str(tiny_checkpoint), "synthetic", output, config(teacher_forcing=2, dmd=2, checkpoint_every=1))


def test_a_killed_run_resumes_at_its_checkpoint_and_ends_as_an_uninterrupted_one(tiny_checkpoint, distilled,
                                                                                 tmp_path):
    run = config(teacher_forcing=2, dmd=2, checkpoint_every=1)
    with pytest.raises(Stop):
        train_student(str(tiny_checkpoint), "synthetic", tmp_path / "parts", run, progress=stop_at(4))
    assert json.loads((tmp_path / "parts" / "training_state" / "state.json").read_text())["step"] == 3
    notes = []
    parts = train_student(str(tiny_checkpoint), "synthetic", tmp_path / "parts", run, resume=True, log=notes.append)

    assert notes[0] == "resuming at step 3 of 4"
    assert [m["step"] for m in metrics(parts)] == [1, 2, 3, 4]
    assert metrics(parts) == [{**m, "examples_per_s": mine["examples_per_s"], "seconds": mine["seconds"]}
                              for m, mine in zip(metrics(distilled), metrics(parts))]
    for file in ("transformer/diffusion_pytorch_model.safetensors", "training_state/adapter.safetensors"):
        whole, resumed = load_file(distilled / file), load_file(parts / file)
        assert not changed(whole, resumed), file  # the student's weights, and the critic's
    assert any(name.startswith("critic.") for name in load_file(parts / "training_state/adapter.safetensors"))


def test_the_student_checkpoint_loads_as_a_student_and_streams(tiny_checkpoint, distilled):
    model = load_quietly(distilled)
    assert model.info.kind == "student" and model.info.condnet_trained and model.info.preset == "tiny"
    summary = model.info.training
    assert summary["steps"] == 4 and summary["teacher"] == str(tiny_checkpoint)
    assert [(p["phase"], p["steps"]) for p in summary["phases"]] == [("teacher_forcing", 2), ("dmd", 2)]
    assert (summary["tau"], summary["chunk_frames"], summary["steps_per_chunk"]) == (0.2, 1, 2)
    assert summary["window"] == 0  # its clips (two chunks: the sink and the last) filled no history chunk
    assert summary["reweight"] and summary["scorer"] == "sharpness_colour"
    print("distilled metrics:", metrics(distilled))

    stream = TryOnStream(model.pipeline, reference=image(0), garments=[("top", image(1))], prompt="",
                                generator=torch.Generator().manual_seed(0),
                                config=StreamConfig(chunk_frames=summary["chunk_frames"],
                                                    steps=summary["steps_per_chunk"], window=summary["window"]))
    frames = np.concatenate([stream.next_chunk() for _ in range(3)])
    assert frames.shape == (9, SIZE, SIZE, 3) and frames.dtype == np.uint8


# -- configs ----------------------------------------------------------------------------------


def test_the_builtin_recipe_parses_at_the_demo_shapes():
    from engine.api import load_student_config

    recipe = load_student_config("student")
    assert recipe.phases == ("teacher_forcing", "dmd") and recipe.tau == 0.2 and recipe.reweight
    # FashionChameleon's configs/gr_dmd_wan22_ic.yaml where it applies at this size
    assert (recipe.critic_ratio, recipe.adam_beta1, recipe.max_grad_norm, recipe.guidance) == (5, 0.0, 10.0, 3.0)
    assert not recipe.guidance_keeps_garments  # the branch the demo teacher learned (README)
    assert (recipe.sampler, recipe.random_exit, recipe.window, recipe.chunk_frames) == ("renoise", True, 5, 3)
    assert {(s.size, s.num_frames, s.fps) for s in recipe.stages} == {((96, 160), 17, 8)}
    assert recipe.block_noise and recipe.ema is None
    assert StudentConfig.from_dict(recipe.to_dict()) == recipe


def test_the_5b_recipe_is_the_official_one():
    from engine.api import load_student_config

    recipe = load_student_config("wan5b-student")
    assert (recipe.critic_ratio, recipe.adam_beta1, recipe.max_grad_norm, recipe.guidance, recipe.tau) == (
        5, 0.0, 10.0, 3.0, 0.2)
    assert (recipe.sampler, recipe.random_exit, recipe.block_noise, recipe.window) == ("renoise", True, True, 5)
    assert (recipe.ema, recipe.ema_start - recipe.dmd_start) == (0.99, 200)  # 200 steps into DMD
    assert recipe.guidance_keeps_garments
    assert (recipe.stages[1].lr, recipe.critic_lr) == (2e-6, 4e-7)


@pytest.mark.parametrize("change, problem", [
    ({"stages": [{"name": "a", "steps": 1, "size": [32, 32], "num_frames": 5}]}, "needs a phase"),
    ({"stages": [{"name": "a", "phase": "dmd", "steps": 1, "size": [32, 32], "num_frames": 5},
                 {"name": "b", "phase": "teacher_forcing", "steps": 1, "size": [32, 32], "num_frames": 5}]},
     "before the dmd stages"),
    ({"p_dance": 0.1}, "p_dance"),
    ({"tau": 0}, "tau"),
    ({"scorer": "clip"}, "scorer"),
    ({"sampler": "heun"}, "sampler"),
    ({"random_exit": True, "sampler": "euler"}, "random_exit needs the renoise sampler"),
    ({"adam_beta1": 1.0}, "adam_beta1"),
    ({"max_grad_norm": 0}, "max_grad_norm"),
    ({"ema": 1.0}, "ema must be null or a decay"),
    ({"ema_start": -1}, "ema_start"),
    ({"block_noise": "yes"}, "block_noise"),
    ({"guidance_keeps_garments": "no"}, "guidance_keeps_garments must be true or false"),
    ({"phases": ["dmd"]}, "phase"),
    ({"num_layers": 12}, "num_layers is for teacher recipes"),
    ({"motion_conditioning": "attention"}, "motion_conditioning is for teacher recipes"),
])
def test_bad_student_configs_are_refused(change, problem):
    with pytest.raises(InputError, match=problem):
        StudentConfig.from_dict({**config(teacher_forcing=1).to_dict(), **change})


def test_a_student_is_not_a_teacher(distilled, tmp_path):
    with pytest.raises(InputError, match="must be a teacher checkpoint"):
        train_student(str(distilled), "synthetic", tmp_path / "again", config(teacher_forcing=1))


# -- two processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_config(batch_size: int) -> StudentConfig:
    return config(teacher_forcing=2, dmd=2, batch_size=batch_size, grad_accum=2, motion_dropout=0.5)


@pytest.mark.slow
def test_two_gloo_processes_distill_as_one_process_with_both_batches(tiny_checkpoint, tmp_path):
    """The shared loop's DDP, with the student's many forward passes per backward and a second model."""
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(ddp_config(batch_size=1).to_dict()))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
               "--master-addr=127.0.0.1", f"--master-port={free_port()}",
               __file__, str(tiny_checkpoint), str(tmp_path / "ddp"), str(config_file), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert not changed(rank0, rank1)  # the student and the critic

    single = train_student(str(tiny_checkpoint), "synthetic", tmp_path / "single", ddp_config(batch_size=2))
    alone = load_file(single / "transformer" / "diffusion_pytorch_model.safetensors")
    base = load_file(tiny_checkpoint / "transformer" / "diffusion_pytorch_model.safetensors")
    moved = torch.cat([(alone[name] - base[name]).flatten() for name in base]).norm()
    apart = torch.cat([(alone[name] - rank0[name]).flatten() for name in base]).norm()
    assert moved > 1e-2 and apart < 0.01 * moved, (apart, moved)  # float rounding of another reduction order
    for ddp, one in zip(metrics(tmp_path / "ddp"), metrics(single)):
        assert ddp.keys() == one.keys() and abs(ddp.get("loss", 0) - one.get("loss", 0)) < 1e-4


def ddp_worker(base: str, output: str, config_file: str, weights: str) -> None:
    """Run by torchrun from the test above: distill, then save this rank's student and critic weights."""
    processes = start_processes()
    trainer = StudentTrainer("synthetic", base, Path(output), StudentConfig.from_file(config_file), False, processes)
    trainer.run(None, None)
    state = {**trainer.pipeline.transformer.state_dict(),
             **{f"critic.{name}": value for name, value in trainer.critic.state_dict().items()}}
    save_file({name: value.contiguous() for name, value in state.items()}, Path(weights) / f"rank{processes.rank}.safetensors")
    processes.close()


if __name__ == "__main__":
    ddp_worker(*sys.argv[1:])



@pytest.mark.slow  # one DMD step on the tiny checkpoint
def test_the_dmd_guidance_unconditional_branch_is_fashionchameleons_negative_prompt(tiny_checkpoint, tmp_path,
                                                                                     monkeypatch):
    from engine.train import student as module
    from engine.train.student_config import WAN_NEGATIVE_PROMPT

    trainer = StudentTrainer("synthetic", str(tiny_checkpoint), tmp_path / "out", config(dmd=1, reweight=False),
                             False, CPU)
    unconditional = []
    real = module.predicted_x0

    def recording(model, batch, guidance=1.0, negative_text=None, keep_garments=True):
        unconditional.append(negative_text)
        return real(model, batch, guidance, negative_text, keep_garments)

    monkeypatch.setattr(module, "predicted_x0", recording)
    trainer.run(None, None)
    negative = trainer.pipeline.encode_prompt(WAN_NEGATIVE_PROMPT)
    assert "过曝" in WAN_NEGATIVE_PROMPT and trainer.config.negative_prompt == WAN_NEGATIVE_PROMPT
    teacher_branch = unconditional[0]  # the teacher's (guided) call comes first, the critic's has no guidance
    torch.testing.assert_close(teacher_branch.cpu(), negative.cpu())
    assert not torch.equal(negative.cpu(), trainer.pipeline.encode_prompt("").cpu())


def test_the_5b_recipe_refuses_the_heuristic_reward_unless_asked(tmp_path):
    from engine.api import load_student_config, train_student as api_train_student

    assert load_student_config("wan5b-student").scorer == "aesthetic"
    missing_teacher = str(tmp_path / "no-teacher")
    with pytest.raises(InputError) as refused:
        api_train_student(missing_teacher, "synthetic", tmp_path / "out", config="wan5b-student")
    message = str(refused.value)
    assert "tryon models convert" in message and "--scorer sharpness_colour" in message
    assert not (tmp_path / "out").exists()
    # asked for the heuristic (or given the weights), it goes on: here to the missing teacher
    for asked in ({"scorer": "sharpness_colour"}, {"aesthetic_weights": str(tmp_path / "none")}):
        with pytest.raises(InputError) as next_problem:
            api_train_student(missing_teacher, "synthetic", tmp_path / "out", config="wan5b-student", **asked)
        if "scorer" in asked:
            assert "no-teacher" in str(next_problem.value)
        else:
            assert "none" in str(next_problem.value) and "aesthetic" in str(next_problem.value)
