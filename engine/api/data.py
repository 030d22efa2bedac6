"""`tryon data` and `tryon eval`: synthetic try-on samples, curation of real videos, scores against ground
truth, and HGC-Bench."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.progress import Notice, Progress

if TYPE_CHECKING:
    from engine.metrics.hgc import MetricSet


def synthesize(
    out_dir: Path,
    count: int,
    seed: int,
    size: tuple[int, int] = (64, 112),
    num_frames: int = 17,
    fps: float = 8.0,
    progress: Progress | None = None,
) -> list[Path]:
    """Write `count` synthetic try-on samples (the training-folder layout) to `out_dir`."""
    from engine.synth import write_dataset

    report = progress or (lambda stage, done, total: None)
    return write_dataset(out_dir, count, seed, size=size, num_frames=num_frames, fps=fps,
                         progress=lambda done: report("samples", done, count))


def evaluate(prediction: Path, reference: Path, sheet: Path | None = None):
    """Score a video (or a folder of videos) against ground truth, and draw a contact sheet: see engine.metrics."""
    from engine.metrics import evaluate as evaluate_videos

    return evaluate_videos(Path(prediction), Path(reference), None if sheet is None else Path(sheet))


def curate(videos: Path, out: Path, detector: Path, vlm: Path, editor: Path, config: str | Path | None = None,
           shard: str | None = None, device: str = "cpu", edit_steps: int = 40, ray: str | None = None,
           workers: int | None = None, progress: Progress | None = None, notice: Notice | None = None):
    """`tryon data curate`: the four curation stages (engine.curate) with models loaded from folders.

    `editor` is an edit model folder (`load_editor`). `shard` "K/N", or under torchrun RANK+1 of
    WORLD_SIZE: the rule `tryon batch` splits its jobs by. `ray` (`auto`, `local` or an address):
    the items run on that Ray cluster, each worker loading the models once (engine.api.ray_pool),
    at most `workers` of them.
    """
    import os
    from functools import partial

    from engine.api.batch import choose_shard
    from engine.curate import CurateConfig, curate as run

    settings = CurateConfig.from_file(config) if config else CurateConfig()
    chosen = choose_shard(shard, os.environ)
    check_curation_folders(detector, vlm, editor, settings)
    models = partial(curation_models, detector, vlm, editor, edit_steps, device, settings)
    if ray is None:
        return run(videos, out, models(notice), settings, shard=chosen, progress=progress)
    from engine.api.curate_ray import ray_items

    with ray_items(ray, out, partial(curation_worker, videos, out, models, settings), workers,
                   use_gpus=device != "cpu") as map_items:
        return run(videos, out, None, settings, shard=chosen, progress=progress, map_items=map_items)


def check_curation_folders(detector: Path, vlm: Path, editor: Path, settings) -> None:
    """Every model folder curation loads, checked before the first of them loads (each an InputError)."""
    from engine.curate.models import check_detector_folder
    from engine.train.scorer import check_scorer_weights
    from engine.vision.vlm import check_vlm_folder

    check_editor_folder(editor)
    check_detector_folder(detector)
    check_vlm_folder(vlm)
    check_scorer_weights(settings.scorer, settings.aesthetic_weights)


def curation_models(detector: Path, vlm: Path, editor: Path, edit_steps: int, device: str, settings,
                    notice: Notice | None = None):
    """The curation models, loaded from their folders (engine.curate.CurationModels)."""
    from engine.curate import CurationModels
    from engine.curate.models import RTDetrPersonDetector
    from engine.train.scorer import make_scorer
    from engine.vision.vlm import LocalVLM

    editor_model = load_editor(editor, steps=edit_steps, device=device)
    return CurationModels(RTDetrPersonDetector(detector, device), LocalVLM(vlm, device), editor_model,
                          make_scorer(settings.scorer, settings.aesthetic_weights, notice or (lambda m: None)))


def curation_worker(videos: Path, out: Path, models, settings):
    """A CurationWorker with freshly loaded models (`models()`): what each Ray worker builds once."""
    from engine.curate.pipeline import CurationWorker
    from engine.progress import quiet_libraries

    quiet_libraries()  # a worker's stderr reaches the driver's terminal

    return CurationWorker(videos, out, models(), settings)


def load_editor(folder: Path, steps: int = 40, device: str = "cpu"):
    """The image edit model for curation: the public route's edit stage (a folder `tryon models init
    public-tiny` writes, or the route's local copy), or a QwenImageEditPlusPipeline folder in diffusers layout."""
    from engine.api.options import resolve_run
    from engine.curate.models import QwenImageEditor
    from engine.modes import RunOptions

    folder = Path(folder)
    runtime = resolve_run(RunOptions(device=device))
    if check_editor_folder(folder) == "route":
        from engine.checkpoint.public.route import load_route

        pipeline = load_route(str(folder), runtime).pipeline.stage("edit").to(runtime.device)
        return QwenImageEditor(pipeline, steps=steps, name=f"the public route's edit stage ({folder.name})")
    from diffusers import QwenImageEditPlusPipeline

    pipeline = QwenImageEditPlusPipeline.from_pretrained(folder, use_safetensors=True).to(runtime.device)
    return QwenImageEditor(pipeline, steps=steps, name=f"Qwen-Image-Edit {folder.name}")


def check_editor_folder(folder: Path) -> str:
    """"route" (a public route folder: its edit stage) or "diffusers" (a QwenImageEditPlusPipeline folder)."""
    from engine.errors import InputError

    if (Path(folder) / "tryon.json").is_file():
        return "route"
    if not (Path(folder) / "model_index.json").is_file():
        raise InputError("not an image edit model folder (no model_index.json, and no route's tryon.json)", folder)
    return "diffusers"


@dataclass(frozen=True)
class BenchModels:
    """Local folders of the metric models; None: that metric is skipped (and says why)."""

    vlm: Path | None = None  # HGC, LGC, NTP: a Qwen2.5-VL-class model (engine.vision.vlm)
    identity: Path | None = None  # Cur: a CLIP-style vision model (engine.vision.embedders)
    text: Path | None = None  # GME: a CLIPModel (text and vision towers)
    quality: Path | None = None  # VQ: the aesthetic model folder (clip/ + head.safetensors)
    device: str = "cpu"


def bench_metrics(models: BenchModels) -> MetricSet:
    """The metrics that can run with `models`, and the reason for each that cannot."""
    from engine.metrics.hgc import (JUDGED, AmplitudeMetric, IdentityMetric, JudgeMetric, MetricSet, QualityMetric,
                                   SmoothnessMetric, TextAlignmentMetric)
    from engine.train.scorer import AestheticScorer, aesthetic_weights_present
    from engine.vision.embedders import ClipEmbedder
    from engine.vision.vlm import LocalVLM

    metrics = MetricSet()
    metrics.add(("Amp",), AmplitudeMetric, "")
    metrics.add(("Smoo",), SmoothnessMetric, "")
    identity, text, vlm, quality = models.identity, models.text, models.vlm, models.quality
    metrics.add(("Cur",), identity and (lambda: IdentityMetric(ClipEmbedder(identity, models.device))),
                "no identity model (--identity-model DIR: an image-embedding model; the paper uses CurricularFace)")
    metrics.add(("GME",), text and (lambda: TextAlignmentMetric(ClipEmbedder(text, models.device))),
                "no text-video model (--text-model DIR: a CLIP-style model; the paper uses GME-Qwen2-VL)")
    metrics.add(("VQ",), quality and (lambda: QualityMetric(_aesthetic(quality, AestheticScorer,
                                                                        aesthetic_weights_present))),
                "no visual-quality model (--quality-model DIR: clip/ and head.safetensors, GR-DMD's aesthetic model)")
    metrics.add(JUDGED, vlm and (lambda: JudgeMetric(LocalVLM(vlm, models.device))),
                "no VLM judge (--vlm DIR: a Qwen2.5-VL-class model; the paper asks Gemini)")
    return metrics


def _aesthetic(folder: Path, scorer_class, present) -> object:
    from engine.errors import InputError

    if not present(folder):
        raise InputError("needs clip/ and head.safetensors", folder)
    return scorer_class(Path(folder))


def evaluate_hgc(bench: Path, predictions: Path, models, render=None, listener=None, log: Notice | None = None):
    """HGC-Bench (engine.metrics.hgc): render the missing predictions with `render` (batch Defaults
    naming the model; None: score what is there), then score them. Returns (BenchReport, BatchSummary | None)."""
    from engine.api.batch import Job, plan as plan_jobs, run_batch
    from engine.api.specs import GarmentSpec
    from engine.errors import InputError
    from engine.media import read_video
    from engine.metrics import hgc

    samples = hgc.read_bench(bench)
    summary = None
    if render is not None:
        jobs = [Job(row=sample.index + 1, user=sample.source, output=sample.prediction_name,
                    garments=(GarmentSpec(sample.garment, None if sample.category == "unknown" else sample.category),),
                    prompt=sample.prompt)
                for sample in samples]
        summary = run_batch(plan_jobs(jobs, predictions), predictions, render, listener=listener)
    elif not Path(predictions).is_dir():
        raise InputError("no predictions folder (give one holding output_<i>.mp4, or --model to render them)",
                         predictions)
    report = hgc.score_bench(samples, predictions, bench_metrics(models), read_video, log)
    return report, summary
