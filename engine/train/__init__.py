"""Training: datasets, the CondNet teacher's flow-matching loop, and VAE fine-tuning."""

from engine.train.config import Stage, TrainConfig
from engine.train.data import (
    FolderDataset,
    SyntheticDataset,
    TrainingExample,
    open_dataset,
)
from engine.train.student import train_student
from engine.train.teacher import train_teacher
from engine.train.vae import train_vae

__all__ = [
    "FolderDataset", "Stage", "SyntheticDataset", "TrainConfig", "TrainingExample", "open_dataset",
    "train_student", "train_teacher", "train_vae",
]
