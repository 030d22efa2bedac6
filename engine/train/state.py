"""What a resumed run needs beyond the checkpoint, saved without pickle; and the atomic save.

`output/training_state/`:
    state.json             step, seconds trained, trainable mode, the trainable parameter
                           names (in optimizer order), AdamW's param groups and scalars
    optimizer.safetensors  AdamW's tensors, keyed "<parameter index>.<name>"
    adapter.safetensors    extra tensors a run needs to resume: LoRA adapters (unmerged; the checkpoint
                           holds them merged), a student's DMD critic (`critic.*`)

A checkpoint is written beside `output/`, completed with the training state and the metrics
so far, then swapped in, so `output/` always holds one whole, consistent step.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from engine.checkpoint import CheckpointInfo, check_checkpoint_target, save_checkpoint
from engine.errors import InputError
from engine.model.tiny_decoder import TinyVideoDecoder
from engine.pipelines.pipeline_tryon import TryOnPipeline
from engine.train.curves import CURVES_FILE, TENSORBOARD_FOLDER

STATE_DIR = "training_state"
METRICS_FILE = "metrics.jsonl"
RUN_LOG = (METRICS_FILE, CURVES_FILE, TENSORBOARD_FOLDER)  # what a run writes beside its checkpoint


@dataclass
class TrainingState:
    step: int  # optimizer steps done
    seconds: float  # training time so far, over all resumed runs
    trainable: str
    parameter_names: list[str]


def save_training_state(
    folder: Path, state: TrainingState, optimizer: torch.optim.Optimizer, adapters: dict[str, torch.Tensor]
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    saved = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in saved["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    save_file(tensors, folder / "optimizer.safetensors")
    if adapters:
        save_file({name: t.cpu().contiguous() for name, t in adapters.items()}, folder / "adapter.safetensors")
    document = {**state.__dict__, "param_groups": saved["param_groups"], "optimizer_scalars": scalars}
    (folder / "state.json").write_text(json.dumps(document, indent=1) + "\n")


def saved_step(output: Path) -> int:
    """The step of the run saved in `output` (its training state); 0 when there is none."""
    try:
        return int(json.loads((output / STATE_DIR / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def check_same_weights(state: TrainingState, trainable: str, names: list[str], folder: Path, than: str,
                       hint: str = "") -> None:
    """A resumed run must train the weights its saved optimizer state was made for; InputError otherwise."""
    if state.trainable != trainable or state.parameter_names != names:
        raise InputError(f"the saved run trained other weights ('{state.trainable}', {len(state.parameter_names)} "
                         f"tensors) than {than} ('{trainable}', {len(names)} tensors){hint}", folder)


def read_training_state(folder: Path) -> tuple[TrainingState, dict, dict[str, torch.Tensor]]:
    """(state, optimizer state dict, LoRA adapters) from `folder`; InputError if unreadable."""
    try:
        document = json.loads((folder / "state.json").read_text())
        state = TrainingState(**{key: document[key] for key in TrainingState.__dataclass_fields__})
        tensors = load_file(folder / "optimizer.safetensors")
        adapter_file = folder / "adapter.safetensors"
        adapters = load_file(adapter_file) if adapter_file.is_file() else {}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"cannot read the training state ({type(error).__name__}: {error})", folder) from None
    per_param: dict[int, dict] = {}
    for key, value in [*tensors.items(), *document["optimizer_scalars"].items()]:
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    return state, {"state": per_param, "param_groups": document["param_groups"]}, adapters


def publish_checkpoint(pipeline: TryOnPipeline, output: Path, info: CheckpointInfo, state: TrainingState,
                       optimizer: torch.optim.Optimizer, adapters: dict[str, torch.Tensor],
                       tiny_decoder: TinyVideoDecoder | None = None) -> None:
    """Replace `output/` by a checkpoint of `pipeline` (and its `tiny_decoder`) plus the training state
    and metrics so far."""
    check_checkpoint_target(output)
    publish(output, lambda staging: save_checkpoint(pipeline, staging, info, tiny_decoder), state, optimizer,
            adapters)


def publish(output: Path, write: Callable[[Path], object], state: TrainingState, optimizer: torch.optim.Optimizer,
            adapters: dict[str, torch.Tensor]) -> None:
    """Replace `output/` by what `write(folder)` writes plus the training state and metrics so far
    (`output` was checked replaceable by the caller)."""
    staging = output.parent / f".{output.name}.next"
    write(staging)
    save_training_state(staging / STATE_DIR, state, optimizer, adapters)
    for name in RUN_LOG:
        if (output / name).is_dir():
            shutil.copytree(output / name, staging / name)
        elif (output / name).is_file():
            shutil.copy2(output / name, staging / name)
    retired = output.parent / f".{output.name}.old"
    shutil.rmtree(retired, ignore_errors=True)
    if output.exists():
        os.replace(output, retired)
    os.replace(staging, output)
    shutil.rmtree(retired, ignore_errors=True)


def keep_metrics_until(output: Path, step: int) -> None:
    """Drop metrics lines past `step`: a killed run logged steps its checkpoint never saw."""
    path = output / METRICS_FILE
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))
