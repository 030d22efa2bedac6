"""HGC-Bench (FashionChameleon's benchmark): read it, render it, score it with the paper's metrics.

The published layout (huggingface.co/datasets/QuanjianSong/HGC-Bench, read by the
FashionChameleon repository's predictors): a folder holding `meta_data.csv`, one row per
sample (240 in the release), whose columns `src_image` and `cloth_image` are image paths
relative to the folder (the person and the garment) and `prompt` is JSON whose `caption`
holds the captions (`en_short`, `en_long`, `cn_short`, `cn_long`; the predictors use
`en_short`). A plain-text prompt is taken as it is. Sample i's prediction is
`output_<i>.mp4` (i: the 0-based row), the name those predictors write.

Metrics (Table 1 of the paper), each computed by a pluggable model and reported as
skipped, with the reason, when its model is not available:

| key  | what                                   | model here                                            |
| ---- | -------------------------------------- | ----------------------------------------------------- |
| Cur  | ID consistency, source photo ↔ frames  | an image-embedding model (transformers vision tower)  |
| GME  | text alignment, prompt ↔ frames        | a CLIP-style text–image model (transformers)          |
| Amp  | motion amplitude                       | built in: mean absolute frame difference              |
| Smoo | smoothness                             | built in: 1 − frame-interpolation error               |
| VQ   | visual quality                         | the aesthetic model GR-DMD uses (CLIP + linear head)  |
| HGC, LGC, NTP | garment consistency 1–5: high level, low level, non-target preservation | a local VLM judge (Qwen2.5-VL class) |

The paper's own models (CurricularFace, GME-Qwen2-VL, its VQ model, Gemini as the judge)
are not available offline; the models above are stand-ins of the same kind, so the
numbers are comparable between runs here, not with the paper's table.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from engine.errors import InputError
from engine.metrics.frames import motion_magnitude, smoothness

META_FILE = "meta_data.csv"
COLUMNS = ("src_image", "cloth_image", "prompt")
METRICS = ("Cur", "GME", "Amp", "Smoo", "VQ", "HGC", "LGC", "NTP")
JUDGED = ("HGC", "LGC", "NTP")
MAX_FRAMES = 16  # frames a model metric looks at per video, evenly spaced

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchSample:
    index: int  # 0-based row of meta_data.csv
    source: Path  # the person
    garment: Path
    prompt: str
    category: str = "unknown"

    @property
    def prediction_name(self) -> str:
        return f"output_{self.index}.mp4"


def read_bench(root: Path) -> list[BenchSample]:
    """The samples of an HGC-Bench folder; InputError naming the file and row for anything wrong."""
    root = Path(root)
    meta = root / META_FILE
    if not meta.is_file():
        raise InputError(f"not an HGC-Bench folder: no {META_FILE}", root)
    try:
        with meta.open(newline="", encoding="utf-8-sig") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read it ({error})", meta) from None
    missing = [column for column in COLUMNS if rows and column not in rows[0]]
    if not rows or missing:
        raise InputError(f"needs the columns {', '.join(COLUMNS)}" + (f" (missing {', '.join(missing)})" if missing else
                                                                       " and at least one row"), meta)
    return [_sample(root, index, row) for index, row in enumerate(rows)]


def _sample(root: Path, index: int, row: dict[str, str]) -> BenchSample:
    paths = {}
    for column in ("src_image", "cloth_image"):
        path = root / (row[column] or "").strip()
        if not row[column] or not path.is_file():
            raise InputError(f"row {index}: {column} '{row[column]}' is not a file in the bench", root / META_FILE)
        paths[column] = path
    category = (row.get("category") or "unknown").strip() or "unknown"
    return BenchSample(index, paths["src_image"], paths["cloth_image"], bench_prompt(row["prompt"] or ""), category)


def bench_prompt(text: str) -> str:
    """The English short caption of a `prompt` cell (JSON as published), or the cell itself."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text.strip()
    caption = data.get("caption", data) if isinstance(data, dict) else data
    if isinstance(caption, dict):
        for key in ("en_short", "en_long", "cn_short", "cn_long"):
            value = caption.get(key)
            if isinstance(value, list):  # FashionChameleon's captions: [dynamic, static]
                value = " ".join(str(part) for part in value)
            if value:
                return str(value).strip()
        return ""
    return str(caption).strip()


# -- the pluggable models -----------------------------------------------------------------------


class VideoMetric(Protocol):
    """One or more of METRICS for one sample's video; `name` says which model computed them."""

    name: str
    keys: tuple[str, ...]

    def __call__(self, sample: BenchSample, frames: np.ndarray) -> dict[str, float]: ...


class AmplitudeMetric:
    name, keys = "pixel difference (built in)", ("Amp",)

    def __call__(self, sample: BenchSample, frames: np.ndarray) -> dict[str, float]:
        return {"Amp": motion_magnitude(frames)}


class SmoothnessMetric:
    name, keys = "frame interpolation (built in)", ("Smoo",)

    def __call__(self, sample: BenchSample, frames: np.ndarray) -> dict[str, float]:
        return {"Smoo": smoothness(frames)}


class QualityMetric:
    """VQ: the mean frame score of a frame scorer (engine.train.scorer: the aesthetic model)."""

    keys = ("VQ",)

    def __init__(self, scorer) -> None:
        self.scorer = scorer
        self.name = f"{scorer.name} scorer"

    def __call__(self, sample: BenchSample, frames: np.ndarray) -> dict[str, float]:
        return {"VQ": float(self.scorer(spaced(frames)).mean())}


class IdentityMetric:
    """Cur: mean cosine similarity between the source photo's embedding and each frame's."""

    keys = ("Cur",)

    def __init__(self, embedder: "ImageEmbedder") -> None:
        self.embedder = embedder
        self.name = embedder.name

    def __call__(self, sample: BenchSample, frames: np.ndarray) -> dict[str, float]:
        source = self.embedder.images([np.asarray(Image.open(sample.source).convert("RGB"))])
        video = self.embedder.images(list(spaced(frames)))
        return {"Cur": float((video @ source.T).mean())}


class TextAlignmentMetric:
    """GME: mean cosine similarity between the prompt's embedding and each frame's."""

    keys = ("GME",)

    def __init__(self, embedder: "TextImageEmbedder") -> None:
        self.embedder = embedder
        self.name = embedder.name

    def __call__(self, sample: BenchSample, frames: np.ndarray) -> dict[str, float]:
        text = self.embedder.text(sample.prompt)
        video = self.embedder.images(list(spaced(frames)))
        return {"GME": float((video @ text.T).mean())}


class JudgeMetric:
    """HGC, LGC, NTP: a VLM rates the video against the garment and the source photo, 1 to 5."""

    keys = JUDGED

    def __init__(self, vlm) -> None:
        self.vlm = vlm
        self.name = vlm.name

    def __call__(self, sample: BenchSample, frames: np.ndarray) -> dict[str, float]:
        garment = Image.open(sample.garment).convert("RGB")
        source = Image.open(sample.source).convert("RGB")
        keyframes = [Image.fromarray(frame) for frame in spaced(frames, 4)]
        return {key: self.vlm.rate([garment, source, *keyframes], JUDGE_QUESTIONS[key]) for key in JUDGED}


JUDGE_QUESTIONS = {
    "HGC": ("The first image is a garment, the second a person, the rest frames of a video of that person "
            "wearing it. Rate from 1 to 5 how well the video's garment matches the garment's category, shape "
            "and overall style. Answer with one digit."),
    "LGC": ("The first image is a garment, the second a person, the rest frames of a video of that person "
            "wearing it. Rate from 1 to 5 how well the video's garment keeps the garment's fine details: "
            "texture, pattern, print, logo and colour. Answer with one digit."),
    "NTP": ("The first image is a garment, the second a person, the rest frames of a video of that person "
            "wearing it. Rate from 1 to 5 how well everything except the garment is preserved: face, hair, "
            "other clothes, body and background. Answer with one digit."),
}


class ImageEmbedder(Protocol):
    name: str

    def images(self, frames: Sequence[np.ndarray]) -> np.ndarray: ...  # (N, D), unit rows


class TextImageEmbedder(ImageEmbedder, Protocol):
    def text(self, prompt: str) -> np.ndarray: ...  # (1, D), unit row


def spaced(frames: np.ndarray, count: int = MAX_FRAMES) -> np.ndarray:
    """At most `count` frames, evenly spaced, first and last included."""
    if len(frames) <= count:
        return frames
    return frames[np.linspace(0, len(frames) - 1, count).round().astype(int)]


@dataclass
class MetricSet:
    """The models that will score, and why each metric that has none is skipped."""

    metrics: list[VideoMetric] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # metric key -> reason

    def add(self, keys: Sequence[str], make: Callable[[], VideoMetric] | None, missing: str) -> None:
        """Add the model `make` builds; with no `make`, or if building it fails, skip `keys` with the reason."""
        if make is None:
            self.skipped.update({key: missing for key in keys})
            return
        try:
            self.metrics.append(make())
        except Exception as error:  # a model that cannot load must not sink the other metrics
            self.skipped.update({key: f"its model could not be loaded ({type(error).__name__}: {error})"
                                 for key in keys})


# -- the report ---------------------------------------------------------------------------------


@dataclass
class BenchReport:
    samples: int  # in the bench
    scored: int  # with a prediction
    means: dict[str, float | None]
    models: dict[str, str | None]  # metric -> the model that computed it
    skipped: dict[str, str]  # metric -> reason
    missing: list[str]  # predictions not found
    per_sample: list[dict[str, object]]

    def to_dict(self) -> dict[str, object]:
        metrics = {key: {"value": self.means.get(key), "model": self.models.get(key), "skipped": self.skipped.get(key)}
                   for key in METRICS}
        return {"bench": "hgc", "samples": self.samples, "scored": self.scored, "metrics": metrics,
                "missing_predictions": self.missing, "per_sample": self.per_sample}


def score_bench(samples: Sequence[BenchSample], predictions: Path, metrics: MetricSet,
                read_frames: Callable[[Path], np.ndarray], log: Log | None = None) -> BenchReport:
    """Score every sample whose prediction (`output_<i>.mp4`) is in `predictions`."""
    rows: list[dict[str, object]] = []
    missing = []
    for sample in samples:
        path = Path(predictions) / sample.prediction_name
        if not path.is_file():
            missing.append(sample.prediction_name)
            continue
        frames = read_frames(path)
        scores: dict[str, object] = {"index": sample.index, "prediction": sample.prediction_name}
        for metric in metrics.metrics:
            scores.update(metric(sample, frames))
        rows.append(scores)
        if log:
            log(f"scored {sample.prediction_name}")
    models = {key: metric.name for metric in metrics.metrics for key in metric.keys}
    skipped = dict(metrics.skipped)
    if not rows:
        skipped = {key: skipped.get(key, "no predictions to score") for key in METRICS}
    means = {key: (None if key in skipped else float(np.mean([row[key] for row in rows]))) for key in METRICS}
    return BenchReport(len(samples), len(rows), means, models, skipped, missing, rows)
