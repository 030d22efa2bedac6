"""Score predicted try-on videos against references: files, folders and the report.

`evaluate(pred, reference)` accepts

* one predicted video and one reference: a plain video file (no garment masks) or a sample
  folder of the synthetic world (`target.mp4`, `masks.npz`, `meta.json`);
* a folder of predicted `<name>.mp4` files and a folder of references, each either a sample
  folder `<name>/` or a video `<name>.mp4`, matched by name.

Per-frame math lives in `engine.metrics.frames`; this module aligns frame counts and sizes
(`score_videos`), reads files and averages the samples into an `EvalReport`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from PIL import Image

from engine.errors import InputError
from engine.media import read_video, resample_indices, video_fps
from engine.metrics import frames as fm
from engine.metrics import silhouette
from engine.media.image import load_image, save_image
from engine.metrics.perceptual import lpips_distance
from engine.metrics.sheet import MAX_SAMPLES, SheetPanel, contact_sheet
from engine.synth.render import background

SAMPLE_TARGET = "target.mp4"
SAMPLE_META = "meta.json"
SAMPLE_MASKS = "masks.npz"
VIDEO_SUFFIX = ".mp4"


@dataclass
class SampleScores:
    """Scores of one predicted video against its reference (over the `frames` compared)."""

    name: str
    psnr: float
    ssim: float
    lpips: float | None
    garment_color_error: float | None
    garment_mae: float | None
    motion_leakage: float | None
    smoothness: float
    motion_magnitude: float
    ref_smoothness: float
    ref_motion_magnitude: float
    frames: int
    # Where the reference is a synthetic sample (its backdrop known, `engine.metrics.silhouette`):
    figure_iou: float | None = None  # the figure's silhouette IoU, mean over frames
    figure_iou_worst: float | None = None  # ... in its worst frame
    figure_height_ratio: float | None = None  # shorter / taller figure height, in the worst frame
    garment_ssim: float | None = None  # SSIM inside the garment masks: the pattern's fidelity
    figure_iou_frames: list[float] | None = None  # per frame
    figure_worst_frame: int | None = None  # the frame of figure_iou_worst

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


METRICS: tuple[str, ...] = tuple(
    f.name for f in fields(SampleScores) if f.name not in ("name", "frames", "figure_iou_frames", "figure_worst_frame")
)
"""The averaged metric names, in report order."""


@dataclass
class EvalReport:
    """All samples, the per-metric mean over samples (None-aware) and notices for the user."""

    samples: list[SampleScores]
    mean: dict[str, float | None]
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "samples": [s.to_dict() for s in self.samples],
            "mean": dict(self.mean),
            "notices": list(self.notices),
        }


def mean_scores(samples: list[SampleScores]) -> dict[str, float | None]:
    """Mean of each metric over the samples that have it; None where no sample has it."""
    out: dict[str, float | None] = {}
    for name in METRICS:
        values = [getattr(s, name) for s in samples if getattr(s, name) is not None]
        out[name] = float(np.mean(values)) if values else None
    return out


# --- arrays -------------------------------------------------------------------------------


def _resize(video: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of every frame (PIL) to width x height."""
    out = np.empty((video.shape[0], height, width, 3), dtype=np.uint8)
    for t, frame in enumerate(video):
        out[t] = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
    return out


def _union_mask(masks: dict[str, np.ndarray] | None, ref: np.ndarray) -> np.ndarray | None:
    """Logical OR of all garment masks, each (T, H, W) like `ref`; None when there are none."""
    if not masks:
        return None
    union = np.zeros(ref.shape[:3], dtype=bool)
    for category, mask in masks.items():
        if mask.shape != ref.shape[:3]:
            raise ValueError(
                f"mask {category!r} {mask.shape} does not match reference {ref.shape[:3]}"
            )
        union |= mask.astype(bool, copy=False)
    return union


def score_videos(
    pred: np.ndarray,
    ref: np.ndarray,
    masks: dict[str, np.ndarray] | None = None,
    name: str = "sample",
    *,
    notices: list[str] | None = None,
    performer: dict[str, object] | None = None,
    backdrop: np.ndarray | None = None,
) -> SampleScores:
    """Score `pred` against `ref` (uint8 RGB, (T, H, W, 3) each).

    Only the first min(T_pred, T_ref) frames are compared; a prediction of another size is
    resized to the reference's (PIL bilinear). Each adjustment, and a skipped LPIPS, appends a
    line to `notices` when given. `masks` maps garment category -> (T_ref, H, W) bool mask
    frame-aligned with `ref`; the garment metrics use their union and are None without masks
    (or when the union is empty in every compared frame). Smoothness and motion are computed
    for both videos over the compared frames, at the reference size. `performer` maps category
    -> the motion video performer's garment RGB (a synthetic sample's meta); with masks it gives
    `motion_leakage` (engine.metrics.frames), else that is None. `backdrop` (H, W, 3), the
    reference scene's background without the figure, gives the figure's silhouette measures
    (`engine.metrics.silhouette`), else they are None.
    """
    fm.check_video(pred, "pred")
    fm.check_video(ref, "ref")
    notes = notices if notices is not None else []
    mask = _union_mask(masks, ref)
    n = min(pred.shape[0], ref.shape[0])
    if pred.shape[0] != ref.shape[0]:
        notes.append(
            f"{name}: prediction has {pred.shape[0]} frames, reference {ref.shape[0]}; "
            f"compared the first {n}"
        )
    pred, ref = pred[:n], ref[:n]
    mask = None if mask is None else mask[:n]
    (h, w), (ph, pw) = ref.shape[1:3], pred.shape[1:3]
    if (ph, pw) != (h, w):
        notes.append(
            f"{name}: prediction is {pw}x{ph}, reference {w}x{h}; resized the prediction (bilinear)"
        )
        pred = _resize(pred, h, w)
    lpips_score, lpips_notice = lpips_distance(pred, ref)
    if lpips_notice is not None:
        notes.append(lpips_notice)
    figure = {} if backdrop is None else figure_scores(pred, ref, backdrop)
    return SampleScores(
        name=name,
        psnr=fm.psnr(pred, ref),
        ssim=fm.ssim(pred, ref),
        lpips=lpips_score,
        garment_color_error=None if mask is None else fm.garment_color_error(pred, ref, mask),
        garment_mae=None if mask is None else fm.garment_mae(pred, ref, mask),
        motion_leakage=None if not (masks and performer) else fm.motion_leakage(
            pred, ref, {c: m[:n] for c, m in masks.items()}, performer),
        smoothness=fm.smoothness(pred),
        motion_magnitude=fm.motion_magnitude(pred),
        ref_smoothness=fm.smoothness(ref),
        ref_motion_magnitude=fm.motion_magnitude(ref),
        frames=n,
        garment_ssim=None if mask is None else fm.garment_ssim(pred, ref, mask),
        **figure,
    )


def figure_scores(pred: np.ndarray, ref: np.ndarray, backdrop: np.ndarray) -> dict[str, object]:
    """The silhouette fields of SampleScores: both videos segmented against the same backdrop."""
    pred_figure, ref_figure = silhouette.figure_masks(pred, backdrop), silhouette.figure_masks(ref, backdrop)
    ious = silhouette.silhouette_iou_per_frame(pred_figure, ref_figure)
    heights = silhouette.height_ratio_per_frame(pred_figure, ref_figure)
    worst = int(np.argmin(ious))
    return {"figure_iou": float(ious.mean()), "figure_iou_worst": float(ious[worst]),
            "figure_height_ratio": float(heights.min()), "figure_iou_frames": [round(float(v), 4) for v in ious],
            "figure_worst_frame": worst}


# --- files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reference:
    """A resolved reference: its video and, for a sample folder, its masks file."""

    video: Path
    masks: Path | None = None
    performer: dict[str, object] | None = None  # the motion performer's garment colours
    background: dict | None = None  # the scene's backdrop (engine.synth.render.background's spec)
    folder: Path | None = None  # a sample folder: its inputs (user photo, garments, motion)


def _is_sample_folder(path: Path) -> bool:
    return path.is_dir() and ((path / SAMPLE_TARGET).exists() or (path / SAMPLE_META).exists())


def _sample_reference(folder: Path) -> _Reference:
    """target.mp4 and the masks file named by meta.json (default masks.npz, if present)."""
    target = folder / SAMPLE_TARGET
    if not target.is_file():
        raise InputError(f"not found (a sample folder holds {SAMPLE_TARGET})", target)
    meta_path = folder / SAMPLE_META
    masks_name: object = SAMPLE_MASKS
    meta: dict = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read sample metadata: {exc}", meta_path) from None
        if not isinstance(meta, dict):
            raise InputError("sample metadata is not a JSON object", meta_path)
        if "masks" in meta:
            masks_name = meta["masks"]
            if not isinstance(masks_name, str):
                raise InputError('"masks" must be a file name', meta_path)
            if not (folder / masks_name).is_file():
                raise InputError(
                    f"masks file not found (named in {meta_path.name})", folder / masks_name
                )
    masks = folder / str(masks_name)
    person = meta.get("motion_person")
    performer = person.get("garment_rgb") if isinstance(person, dict) else None
    return _Reference(target, masks if masks.is_file() else None, performer if isinstance(performer, dict) else None,
                      _background_spec(meta, meta_path), folder)


def _background_spec(meta: dict, meta_path: Path) -> dict | None:
    """The figure's backdrop as the synthetic world records it (meta person.appearance.background)."""
    try:
        spec = meta["person"]["appearance"]["background"]
    except (KeyError, TypeError):
        return None
    if not (isinstance(spec, dict) and spec.get("kind") in ("plain", "two_tone") and isinstance(spec.get("colours"), list)
            and isinstance(spec.get("split"), (int, float))):
        raise InputError("person.appearance.background is not a synthetic backdrop (kind, colours, split)", meta_path)
    return spec


def _load_masks(path: Path) -> dict[str, np.ndarray]:
    """garment category -> (T, H, W) bool mask, from an .npz file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            masks = {key: np.asarray(npz[key]) for key in npz.files}
    except Exception as exc:  # np.load raises many kinds (OSError, ValueError, BadZipFile...)
        raise InputError(f"cannot read masks: {exc}", path) from None
    for key, mask in masks.items():
        if mask.ndim != 3:
            raise InputError(f"mask {key!r} has shape {mask.shape}, expected (T, H, W)", path)
    return {key: mask.astype(bool, copy=False) for key, mask in masks.items()}


def _reference_for(folder: Path, name: str) -> _Reference | None:
    """The reference called `name` in a folder of references: `<name>/` or `<name>.mp4`."""
    if (folder / name).is_dir():
        return _sample_reference(folder / name)
    if (folder / f"{name}{VIDEO_SUFFIX}").is_file():
        return _Reference(folder / f"{name}{VIDEO_SUFFIX}")
    return None


def _reference_names(folder: Path) -> set[str]:
    names = {p.name for p in folder.iterdir() if _is_sample_folder(p)}
    return names | {p.stem for p in folder.glob(f"*{VIDEO_SUFFIX}") if p.is_file()}


def _pairs(pred: Path, reference: Path, notices: list[str]) -> list[tuple[str, Path, _Reference]]:
    """(name, predicted video, reference) for every prediction that has a reference."""
    for path in (pred, reference):
        if not path.exists():
            raise InputError("not found", path)
        if not (path.is_file() or path.is_dir()):
            raise InputError("is neither a video file nor a folder", path)
    if pred.is_file():
        if reference.is_file():
            return [(pred.stem, pred, _Reference(reference))]
        if _is_sample_folder(reference):
            return [(pred.stem, pred, _sample_reference(reference))]
        found = _reference_for(reference, pred.stem)
        if found is None:
            raise InputError(
                f"not a sample folder (no {SAMPLE_TARGET}) and holds no reference named {pred.stem!r}",
                reference,
            )
        return [(pred.stem, pred, found)]
    if reference.is_file():
        raise InputError("a folder of predictions needs a folder of references", reference)
    videos = sorted(p for p in pred.iterdir() if p.is_file() and p.suffix.lower() == VIDEO_SUFFIX)
    if not videos:
        raise InputError(f"no {VIDEO_SUFFIX} files in this folder", pred)
    pairs = []
    for video in videos:
        found = _reference_for(reference, video.stem)
        if found is None:
            notices.append(f"{video.stem}: no reference named {video.stem!r} in {reference}; skipped")
        else:
            pairs.append((video.stem, video, found))
    if not pairs:
        raise InputError(f"no prediction matches a reference in {reference} by name", pred)
    unscored = sorted(_reference_names(reference) - {name for name, _, _ in pairs})
    if unscored:
        notices.append(f"{len(unscored)} reference(s) have no prediction: {', '.join(unscored)}")
    return pairs


@dataclass
class _Loaded:
    """One pair's videos as scored (frame rates aligned), with the reference's masks and backdrop."""

    pred: np.ndarray
    ref: np.ndarray
    masks: dict[str, np.ndarray] | None
    backdrop: np.ndarray | None


def _load_pair(name: str, pred_path: Path, ref: _Reference, notices: list[str]) -> _Loaded:
    ref_frames = read_video(ref.video)
    height, width = ref_frames.shape[1:3]
    if min(height, width) < fm.SSIM_WINDOW:
        raise InputError(
            f"frames are {width}x{height}; SSIM needs at least {fm.SSIM_WINDOW}x{fm.SSIM_WINDOW}",
            ref.video,
        )
    masks = None
    if ref.masks is not None:
        masks = _load_masks(ref.masks)
        for key, mask in masks.items():
            if mask.shape != ref_frames.shape[:3]:
                raise InputError(
                    f"mask {key!r} has shape {mask.shape}, {ref.video.name} has "
                    f"{ref_frames.shape[:3]} (T, H, W)",
                    ref.masks,
                )
    pred_frames = read_video(pred_path)
    pred_fps, ref_fps = video_fps(pred_path), video_fps(ref.video)
    if abs(pred_fps - ref_fps) > 1e-3 * ref_fps:
        # Compared by time, at the lower rate: each frame of the slower video meets the frame
        # of the faster one shown at the same moment (frame by frame, an 8 fps render would
        # meet a 25 fps reference's frame 3i at its frame i).
        rate = min(pred_fps, ref_fps)
        notices.append(f"{name}: prediction is {pred_fps:g} fps, reference {ref_fps:g} fps; "
                       f"compared by time, at {rate:g} fps")
        pred_frames = pred_frames[_at_rate(len(pred_frames), pred_fps, rate)]
        kept = _at_rate(len(ref_frames), ref_fps, rate)
        ref_frames = ref_frames[kept]
        masks = None if masks is None else {key: mask[kept] for key, mask in masks.items()}
    backdrop = None
    if ref.background is not None:
        try:
            backdrop = background(ref.background, (width, height))
        except (KeyError, IndexError) as exc:
            raise InputError(f"unknown backdrop colour {exc}", ref.video.parent / SAMPLE_META) from None
    return _Loaded(pred_frames, ref_frames, masks, backdrop)


def _sheet_panel(scores: SampleScores, loaded: _Loaded, ref: _Reference) -> SheetPanel:
    """The sheet's part for one scored pair: the compared frames, and a sample folder's inputs."""
    n, (height, width) = scores.frames, loaded.ref.shape[1:3]
    output = loaded.pred[:n]
    if output.shape[1:3] != (height, width):
        output = _resize(output, height, width)
    title = f"{scores.name}: PSNR {scores.psnr:.2f}  SSIM {scores.ssim:.3f}"
    if scores.figure_iou is not None:
        title += (f"  figure IoU {scores.figure_iou:.2f} (worst {scores.figure_iou_worst:.2f}, frame "
                  f"{scores.figure_worst_frame})  height {scores.figure_height_ratio:.2f}")
    if scores.garment_ssim is not None:
        title += f"  garment SSIM {scores.garment_ssim:.2f}"
    inputs, motion = None, None
    if ref.folder is not None:
        meta_path = ref.folder / SAMPLE_META
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        garments = meta.get("garments")
        names = garments.values() if isinstance(garments, dict) else ()
        files = [ref.folder / "user.png", *(ref.folder / str(name) for name in names)]
        inputs = [np.asarray(load_image(path)) for path in files if path.is_file()]
        if (ref.folder / "motion.mp4").is_file():
            motion = read_video(ref.folder / "motion.mp4")
    return SheetPanel(title, output, loaded.ref[:n], motion, inputs, scores.figure_worst_frame)


def _at_rate(count: int, fps: float, rate: float) -> list[int]:
    """Which of `count` frames at `fps` show the moments of a video at `rate` (see resample_indices)."""
    return resample_indices(count, fps, rate, math.ceil(count * rate / fps - 1e-9), loop=False)


def evaluate(pred: Path, reference: Path, sheet: Path | None = None) -> EvalReport:
    """Score a predicted video (or a folder of them) against a reference (or a folder of them).

    Raises InputError (`<path>: <problem>`) for a missing or unreadable file, a malformed
    sample folder, or when no prediction matches a reference. The report's `mean` averages
    each metric over the samples that have it (None where none does); notices are de-duplicated.
    With `sheet`, a contact sheet of the first `MAX_SAMPLES` samples is written there (PNG).
    """
    pred, reference = Path(pred), Path(reference)
    if sheet is not None:
        if Path(sheet).suffix.lower() != ".png":
            raise InputError("the sheet must be a .png file", sheet)
        if not Path(sheet).absolute().parent.is_dir():
            raise InputError("the sheet's folder does not exist", sheet)
    notices: list[str] = []
    samples, panels = [], []
    for name, pred_path, ref in _pairs(pred, reference, notices):
        loaded = _load_pair(name, pred_path, ref, notices)
        samples.append(score_videos(loaded.pred, loaded.ref, loaded.masks, name, notices=notices,
                                    performer=ref.performer, backdrop=loaded.backdrop))
        if sheet is not None and len(panels) < MAX_SAMPLES:
            panels.append(_sheet_panel(samples[-1], loaded, ref))
    if sheet is not None:
        if len(samples) > MAX_SAMPLES:
            notices.append(f"the sheet shows the first {MAX_SAMPLES} of {len(samples)} samples")
        save_image(sheet, contact_sheet(panels))
    unique_notices = list(dict.fromkeys(notices))
    return EvalReport(samples=samples, mean=mean_scores(samples), notices=unique_notices)
