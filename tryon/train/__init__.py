"""Training: datasets, the CondNet teacher's flow-matching loop, and VAE fine-tuning."""

from tryon.train.config import Stage, TrainConfig
from tryon.train.data import (
    FolderDataset,
    SyntheticDataset,
    TrainingExample,
    open_dataset,
)
from tryon.train.student import train_student
from tryon.train.teacher import train_teacher
from tryon.train.vae import train_vae

__all__ = [
    "FolderDataset", "Stage", "SyntheticDataset", "TrainConfig", "TrainingExample", "open_dataset",
    "train_student", "train_teacher", "train_vae",
]
