"""`tryon data curate VIDEOS OUT`: FashionChameleon's four-stage curation, from raw videos to training samples.

1. filter (coarse to fine): decodable, duration, resolution; scene cuts split a video into
   clips; each clip: duration, exactly one person (the detector), motion within a band,
   quality (the GR-DMD frame scorer). A kept clip is written to `OUT/.curate/<clip>/clip.mp4`.
2. caption: the VLM writes a static caption (scene, appearance; from the first frame) and a
   dynamic one (action, motion; from frames across the clip).
3. garments ("try-off"): the VLM says which categories the person wears; for each, the edit
   model turns the first frame into a product shot; the VLM validates it (kept or dropped).
4. reference: for each garment, one of the same category from another clip of the curated
   pool is put on the first frame with the edit model, so the reference wears a different
   garment than the target (the mismatched reference both papers train with).

The result is one sample folder per clip in `OUT/samples/<clip>/` — `user.png`,
`garment_<category>.png`, `target.mp4`, `caption.txt`, `meta.json` — the layout `tryon train`
reads (engine.train.data), written whole or not at all.

Every decision is a line of `OUT/curation.jsonl`: stage, video, clip, `kept` or `dropped`,
the reason, and the numbers behind it. A re-run skips every stage a clip has been through
(its decision is kept in `OUT/.curate/`, hidden from the training reader) and logs only new
decisions. `shard` (K of N, the rule of `tryon batch`) takes every N-th video from the K-th;
shards append to the same log, a line at a time. The reference stage draws from the pool of
garments curated so far by any shard: run it again after every shard has finished stage 3
to let every clip draw from the whole pool.

The work comes in items that a `CurationWorker` (the models, loaded once) runs: each video
through stages 1 to 3, then, once every video is through, each clip through stage 4. By
default they run in this process, one after another; `map_items` runs them elsewhere (on a
Ray cluster: engine.api.curate_ray), in any order: every item's state is its own files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from engine.curate import filtering
from engine.curate.config import CurateConfig
from engine.curate.models import GarmentEditor, PersonDetector
from engine.errors import InputError
from engine.media import probe_video, read_video, write_video

CATEGORIES = ("top", "bottom", "dress")
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
LOG_FILE = "curation.jsonl"
WORK_DIR = ".curate"
SAMPLES_DIR = "samples"
STAGES = ("filter", "caption", "garment", "reference")

Progress = Callable[[str, int, int], None]

STATIC_QUESTION = ("Describe the scene and the person's appearance: the place, the light, the person's hair, "
                   "face and clothes. One or two sentences.")
DYNAMIC_QUESTION = ("These are frames of one video in order. Describe the person's action and motion, and "
                    "whether the camera moves. One or two sentences.")
WORN_QUESTION = "Is the person wearing a {category}? Answer yes or no."
VALID_QUESTION = ("Is the first image a product photo of the {category} the person in the second image wears, "
                  "with the same colour, texture and pattern? Answer yes or no.")


class Captioner(Protocol):
    """What curation asks of its VLM (engine.vision.vlm.LocalVLM)."""

    name: str

    def describe(self, images: Sequence[Image.Image | np.ndarray], question: str, max_new_tokens: int = 60) -> str: ...

    def yes_probability(self, images: Sequence[Image.Image | np.ndarray], question: str) -> float: ...


@dataclass
class CurationModels:
    detector: PersonDetector
    vlm: Captioner
    editor: GarmentEditor
    scorer: Any  # engine.train.scorer.FrameScorer

    def names(self) -> dict[str, str]:
        return {"detector": self.detector.name, "vlm": self.vlm.name, "editor": self.editor.name,
                "scorer": self.scorer.name}


@dataclass
class CurationSummary:
    videos: int  # in this shard
    log: Path
    samples_dir: Path
    decisions: dict[str, dict[str, int]] = field(default_factory=dict)  # this run: stage -> kept/dropped counts
    samples: list[Path] = field(default_factory=list)  # every sample of this shard's videos in OUT
    failed: list[str] = field(default_factory=list)  # items whose worker failed ("video X: why"); a re-run retries

    def to_dict(self) -> dict[str, Any]:
        return {"videos": self.videos, "log": str(self.log), "samples_dir": str(self.samples_dir),
                "samples": len(self.samples), "decisions": self.decisions, "failed": self.failed}


@dataclass(frozen=True)
class Item:
    """One piece of curation work: a `video` (its path inside VIDEOS) through stages 1 to 3, or a `clip`
    through stage 4."""

    kind: str  # "video" or "clip"
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class ItemResult:
    """What an item left: a video's clips that have a validated garment (earlier runs' too), the decisions
    it logged (stage -> kept/dropped counts), or why its worker failed."""

    item: Item
    clips: tuple[str, ...] = ()
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None


class CurationWorker:
    """Runs items with one set of models (see the module docstring)."""

    def __init__(self, videos: Path, out: Path, models: CurationModels, config: CurateConfig) -> None:
        self.videos, self.out, self.models, self.config = Path(videos), Path(out), models, config

    def __call__(self, item: Item) -> ItemResult:
        run = _Run(self.videos, self.out, self.models, self.config, CurationLog(self.out / LOG_FILE))
        if item.kind == "video":
            clips = run.filter_all([self.videos / item.name])
            clips = run.each("caption", clips, run.caption)
            clips = run.each("garment", clips, run.garments)
        else:
            clips = run.each("reference", [item.name], run.reference)
        return ItemResult(item, tuple(clips), run.log.counts)


MapItems = Callable[[list[Item]], Iterable[ItemResult]]


# -- the log and the per-clip state ------------------------------------------------------------


class CurationLog:
    """OUT/curation.jsonl: one JSON line per decision, appended by a single write (shards share it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: dict[str, dict[str, int]] = {}

    def write(self, stage: str, video: str, clip: str | None, decision: str, reason: str, **details: Any) -> None:
        line = {"stage": stage, "video": video, "clip": clip, "decision": decision, "reason": reason, **details}
        data = (json.dumps(line) + "\n").encode("utf-8")
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)
        stage_counts = self.counts.setdefault(stage, {"kept": 0, "dropped": 0})
        stage_counts[decision] += 1


def _write_json(path: Path, data: Any) -> None:
    """Atomically: a reader sees the whole file or none (the marker that a stage is done)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def list_videos(folder: Path) -> list[Path]:
    """Video files under `folder` (any depth, hidden entries skipped), in path order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder of videos", folder)
    found = sorted(path for path in folder.rglob("*") if path.suffix.lower() in VIDEO_SUFFIXES
                   and not any(part.startswith(".") for part in path.relative_to(folder).parts))
    if not found:
        raise InputError(f"no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) in this folder", folder)
    return found


def video_key(relative: Path) -> str:
    """A folder-safe name for a video, from its path inside VIDEOS."""
    text = "__".join(relative.with_suffix("").parts)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


# -- the run ------------------------------------------------------------------------------------


def curate(videos: Path, out: Path, models: CurationModels | None, config: CurateConfig, shard=None,
           progress: Progress | None = None, map_items: MapItems | None = None) -> CurationSummary:
    """Run the four stages on this shard's videos (see the module docstring); return what happened.

    `shard`: anything with `takes(position)` (engine.api.batch.Shard: `tryon batch`'s rule); None: all.
    `map_items` runs a list of items and yields each one's result as it ends (None: here, with
    `models`).
    """
    videos, out = Path(videos), Path(out)
    mine = [path for position, path in enumerate(list_videos(videos)) if shard is None or shard.takes(position)]
    if out.exists() and not out.is_dir():
        raise InputError("the output must be a folder", out)
    (out / WORK_DIR).mkdir(parents=True, exist_ok=True)
    if map_items is None:
        map_items = partial(map, CurationWorker(videos, out, models, config))
    report = progress or (lambda *_: None)
    summary = CurationSummary(len(mine), out / LOG_FILE, out / SAMPLES_DIR)
    video_items = [Item("video", str(path.relative_to(videos))) for path in mine]
    clips = _collect(map_items(video_items), summary, lambda done: report("filter, caption, garments", done,
                                                                        len(video_items)))
    clip_items = [Item("clip", clip) for clip in sorted(clips)]
    _collect(map_items(clip_items), summary, lambda done: report("reference", done, len(clip_items)))
    summary.samples = [out / SAMPLES_DIR / clip for clip in _clips_of(out, videos, mine)
                       if (out / SAMPLES_DIR / clip).is_dir()]
    return summary


def _collect(results: Iterable[ItemResult], summary: CurationSummary, done: Callable[[int], None]) -> list[str]:
    """Fold the results into `summary` as they come; the clips they left."""
    clips = []
    for number, result in enumerate(results, start=1):
        for stage, counts in result.counts.items():
            totals = summary.decisions.setdefault(stage, {"kept": 0, "dropped": 0})
            for decision, count in counts.items():
                totals[decision] += count
        if result.error is not None:
            summary.failed.append(f"{result.item}: {result.error}")
        clips += result.clips
        done(number)
    return clips


@dataclass
class _Run:
    videos: Path
    out: Path
    models: CurationModels
    config: CurateConfig
    log: CurationLog

    def work(self, clip: str) -> Path:
        return self.out / WORK_DIR / clip

    def marker(self, clip: str, stage: str) -> Path:
        return self.work(clip) / f"{stage}.json"

    # -- stage 1 --------------------------------------------------------------------------------

    def filter_all(self, videos: list[Path]) -> list[str]:
        """Stage 1 for every video not filtered before; the clips kept (this run's and earlier runs')."""
        kept = []
        for path in videos:
            marker = _video_marker(self.out, self.videos, path)
            result = _read_json(marker)
            if result is None:
                result = self.filter_video(path)
                _write_json(marker, result)
            kept += result["kept"]
        return kept

    def filter_video(self, path: Path) -> dict[str, Any]:
        """Check one video and its clips; write each kept clip; the clips kept."""
        relative = str(path.relative_to(self.videos))
        key = video_key(path.relative_to(self.videos))
        config = self.config

        def drop(reason: str, clip: str | None = None, **details: Any) -> None:
            self.log.write("filter", relative, clip, "dropped", reason, **details)

        try:
            info = probe_video(path)
            frames = read_video(path, size=_capped_size(info.width, info.height, config.max_side))
        except InputError as error:
            drop(f"not decodable: {error.problem}")
            return {"kept": []}
        reason = filtering.check_resolution(info.width, info.height, config) or filtering.check_duration(
            len(frames), info.fps, config)
        if reason:
            drop(reason, width=info.width, height=info.height, seconds=round(len(frames) / info.fps, 3))
            return {"kept": []}
        small = filtering.shrink(frames, config.analysis_side)
        segments = filtering.scene_segments(small, config.scene_cut)
        kept = []
        for index, segment in enumerate(segments):
            clip = f"{key}-{index:03d}"
            where = {"frames": [segment.start, segment.end], "scenes": len(segments)}
            reason = filtering.check_duration(segment.length, info.fps, config, what="clip after scene cuts")
            if reason:
                drop(reason, clip, **where)
                continue
            part = small[segment.start:segment.end]
            reason, counts = filtering.check_one_person(self.models.detector, part, config)
            if reason:
                drop(reason, clip, persons=counts, **where)
                continue
            reason, motion = filtering.check_motion(part, config)
            if reason:
                drop(reason, clip, motion=round(motion, 5), **where)
                continue
            reason, quality = filtering.check_quality(self.models.scorer, part, config)
            if reason:
                drop(reason, clip, motion=round(motion, 5), quality=round(quality, 4), **where)
                continue
            self.work(clip).mkdir(parents=True, exist_ok=True)
            write_video(self.work(clip) / "clip.mp4", frames[segment.start:segment.end], info.fps)
            _write_json(self.marker(clip, "filter"), {"video": relative, "fps": info.fps, **where,
                                                      "motion": motion, "quality": quality})
            self.log.write("filter", relative, clip, "kept",
                           f"one person, motion {motion:.4f}, quality {quality:.3f}", persons=counts,
                           motion=round(motion, 5), quality=round(quality, 4), **where)
            kept.append(clip)
        return {"kept": kept}

    # -- stages 2 to 4 --------------------------------------------------------------------------

    def each(self, stage: str, clips: list[str], step: Callable[[str], dict[str, Any]]) -> list[str]:
        """Run `step` on every clip that has not been through `stage`; the clips it kept."""
        kept = []
        for clip in clips:
            result = _read_json(self.marker(clip, stage))
            if result is None:
                result = step(clip)
                _write_json(self.marker(clip, stage), result)
            if result["kept"]:
                kept.append(clip)
        return kept

    def video_of(self, clip: str) -> str:
        return _read_json(self.marker(clip, "filter"))["video"]

    def first_frame(self, clip: str) -> Image.Image:
        return Image.fromarray(read_video(self.work(clip) / "clip.mp4", num_frames=1)[0])

    def caption(self, clip: str) -> dict[str, Any]:
        frames = read_video(self.work(clip) / "clip.mp4")
        keyframes = list(frames[np.linspace(0, len(frames) - 1, min(4, len(frames))).round().astype(int)])
        vlm, tokens = self.models.vlm, self.config.caption_tokens
        static = vlm.describe([frames[0]], STATIC_QUESTION, max_new_tokens=tokens)
        dynamic = vlm.describe(keyframes, DYNAMIC_QUESTION, max_new_tokens=tokens)
        self.log.write("caption", self.video_of(clip), clip, "kept", "captioned", static=static, dynamic=dynamic)
        return {"kept": True, "static": static, "dynamic": dynamic}

    def worn_categories(self, frame: Image.Image) -> tuple[list[str], dict[str, float]]:
        """The categories the VLM says are worn: a dress alone, or a top and/or a bottom; at least one."""
        answers = {category: self.models.vlm.yes_probability([frame], WORN_QUESTION.format(category=category))
                   for category in CATEGORIES}
        threshold = self.config.category_threshold
        if answers["dress"] >= threshold and answers["dress"] >= max(answers["top"], answers["bottom"]):
            return ["dress"], answers
        worn = [category for category in ("top", "bottom") if answers[category] >= threshold]
        return worn or [max(answers, key=answers.get)], answers

    def garments(self, clip: str) -> dict[str, Any]:
        frame = self.first_frame(clip)
        video = self.video_of(clip)
        worn, answers = self.worn_categories(frame)
        kept = {}
        for category in worn:
            shot = self.models.editor.take_off(frame, category)
            validity = self.models.vlm.yes_probability([shot, frame], VALID_QUESTION.format(category=category))
            details = {"category": category, "validation": round(validity, 4),
                       "worn": {key: round(value, 4) for key, value in answers.items()}}
            if validity < self.config.min_validation:
                self.log.write("garment", video, clip, "dropped",
                               f"extracted {category} failed validation: P(yes) {validity:.3f} "
                               f"under {self.config.min_validation:g}", **details)
                continue
            path = self.work(clip) / f"garment_{category}.png"
            shot.save(path)
            kept[category] = path.name
            self.log.write("garment", video, clip, "kept", f"extracted {category} passed validation", **details)
        if not kept:
            self.log.write("garment", video, clip, "dropped", "no extracted garment passed validation",
                           categories=worn)
        return {"kept": bool(kept), "garments": kept}

    def pool(self) -> dict[str, list[tuple[str, Path]]]:
        """Every validated garment in OUT, any shard's: category -> [(clip, image)], in clip order."""
        pool: dict[str, list[tuple[str, Path]]] = {category: [] for category in CATEGORIES}
        for marker in sorted((self.out / WORK_DIR).glob("*/garment.json")):
            for category, name in (_read_json(marker) or {}).get("garments", {}).items():
                pool[category].append((marker.parent.name, marker.parent / name))
        return pool

    def reference(self, clip: str) -> dict[str, Any]:
        video = self.video_of(clip)
        garments = _read_json(self.marker(clip, "garment"))["garments"]
        pool = self.pool()
        target = self.first_frame(clip)
        user = target
        worn_by_reference = {}
        for category in garments:
            others = [entry for entry in pool[category] if entry[0] != clip]
            if not others:
                self.log.write("reference", video, clip, "dropped",
                               f"no other {category} in the curated pool to dress the reference in (yet)")
                return {"kept": False}
            donor, image = others[_pick(self.config.seed, clip, category, len(others))]
            user = self.models.editor.put_on(user, Image.open(image).convert("RGB"), category)
            worn_by_reference[category] = donor
        user = user.convert("RGB").resize(target.size, Image.BICUBIC)
        if np.array_equal(np.asarray(user), np.asarray(target)):
            self.log.write("reference", video, clip, "dropped", "the edit left the first frame unchanged")
            return {"kept": False}
        sample = self.write_sample(clip, user, garments, worn_by_reference)
        self.log.write("reference", video, clip, "kept", "reference wears "
                       + ", ".join(f"{category} of {donor}" for category, donor in worn_by_reference.items()),
                       sample=str(sample.relative_to(self.out)))
        return {"kept": True, "reference_garments": worn_by_reference}

    def write_sample(self, clip: str, user: Image.Image, garments: dict[str, str], donors: dict[str, str]) -> Path:
        """OUT/samples/<clip>/, built beside it and renamed: whole or absent."""
        final = self.out / SAMPLES_DIR / clip
        staging = self.out / SAMPLES_DIR / f".{clip}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        user.save(staging / "user.png")
        for name in garments.values():
            shutil.copy2(self.work(clip) / name, staging / name)
        shutil.copy2(self.work(clip) / "clip.mp4", staging / "target.mp4")
        captions = _read_json(self.marker(clip, "caption"))
        (staging / "caption.txt").write_text(f"{captions['dynamic']} {captions['static']}".strip() + "\n",
                                             encoding="utf-8")
        filtered = _read_json(self.marker(clip, "filter"))
        meta = {"source": filtered["video"], "frames": filtered["frames"], "fps": filtered["fps"],
                "captions": {"static": captions["static"], "dynamic": captions["dynamic"]},
                "garments": sorted(garments), "reference_garments_from": donors,
                "motion": filtered["motion"], "quality": filtered["quality"], "models": self.models.names(),
                "config": self.config.to_dict()}
        (staging / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        return final


def _video_marker(out: Path, videos: Path, path: Path) -> Path:
    """Stage 1's record of a video: the clips it kept."""
    return out / WORK_DIR / "videos" / f"{video_key(path.relative_to(videos))}.json"


def _clips_of(out: Path, videos: Path, paths: list[Path]) -> list[str]:
    """The clips stage 1 kept from these videos, in video order."""
    clips = []
    for path in paths:
        result = _read_json(_video_marker(out, videos, path))
        clips += result["kept"] if result else []
    return clips


def _pick(seed: int, clip: str, category: str, count: int) -> int:
    """A stable choice among `count` donors for (seed, clip, category): the same on every re-run."""
    digest = hashlib.sha256(f"{seed}/{clip}/{category}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def _capped_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is at most `longest`, both even (H.264 yuv420p)."""
    scale = min(1.0, longest / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
