"""Started by torchrun from test_distributed.py: train, then save this rank's transformer weights.

Usage: ddp_worker.py BASE OUTPUT CONFIG WEIGHTS_DIR
"""

import sys
from pathlib import Path

from safetensors.torch import save_file

from engine.model.distributed import start_processes
from engine.train.config import TrainConfig
from engine.train.teacher import TeacherTrainer


def main(base: str, output: str, config_file: str, weights: str) -> None:
    processes = start_processes()
    trainer = TeacherTrainer("synthetic", base, Path(output), TrainConfig.from_file(config_file), False, processes)
    trainer.run(None, None)
    state = {name: value.contiguous() for name, value in trainer.pipeline.transformer.state_dict().items()}
    save_file(state, Path(weights) / f"rank{processes.rank}.safetensors")
    processes.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
