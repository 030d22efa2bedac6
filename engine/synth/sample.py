"""Synthetic try-on samples: generation, writing one to disk, and writing a dataset.

A sample is one person (appearance A) wearing garments G doing motion program M:
  * `target`: A wearing G doing M (the ground-truth video);
  * `masks[c]`: where garment c of G is visible in each target frame: exactly the pixels
    whose topmost shape belongs to it (sleeves included; arms, hands, hair or another
    garment in front of it are excluded);
  * `user`: frame 0 of A (same pose, same backdrop) wearing other garments G': of the same
    categories, with new colours and texture and half the time a different cut (sleeve or
    hem length, trousers vs skirt); or, where G covers the whole body (a dress, or a top
    with a bottom), half the time the other whole-body layout (a top and a bottom for a
    dress, a dress for a top and a bottom), since users try on dresses in trousers. It
    differs from target[0] only inside masks[c] or the user's own garment masks
    (`user_masks`, keyed by the user's categories);
  * `garments[c]`: product shots of G, flat on white, at the video's size;
  * `motion`: another person B (other hair, and other skin tone or backdrop; own body
    proportions and clothes) doing M. `meta["motion_person"]["garment_rgb"]` records the
    mean colour of each of B's garments as seen in `motion` (top, bottom or dress: what B
    wears on each part of the body), for measuring how much of B leaks into an output.
Where G does not cover the body (a top alone, a bottom alone), the person wears their own
plain clothes, identical in `user` and `target` and outside every mask.

Everything follows from the seed through independent random streams, so e.g. changing
how garments are drawn does not change the motion program of the same seed. "Left" in
captions is the image left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from engine.errors import DISK_FULL, InputError, RuntimeFailure
from engine.limits import check_frames_fit_in_memory, check_int, check_seed
from engine.media import VideoWriter
from engine.media.image import disk_is_full
from engine.paths import check_replaceable, holds_only, make_folder
from engine.synth import colours
from engine.synth.figure import (
    Appearance,
    MotionProgram,
    Skeleton,
    build_skeleton,
    canonical_pose,
    sample_appearance,
    sample_motion,
)
from engine.synth.garments import (
    CATEGORIES,
    OUTFITS,
    GarmentSpec,
    base_outfit,
    restyle,
    sample_garment,
)
from engine.synth.render import Scene, background, label_masks, rasterise, shade
from engine.synth.shapes import Worn, dress_figure, garment_alone

MIN_SIDE = 32
MAX_SIDE = 2048  # the synthetic world is drawn on the CPU: larger takes minutes a sample
SEED_STRIDE = 100_003  # dataset seed s, sample i -> make_sample seed s * SEED_STRIDE + i
FILES = ("user.png", "motion.mp4", "target.mp4", "caption.txt", "masks.npz", "meta.json")
WHITE = (255, 255, 255)
MAX_FRAMES = 1000  # per video
MAX_FPS = 1000.0
PRODUCT_FILL = 0.84  # a product shot's garment spans this much of the frame's width or height
_PERFORMER = "performer:"  # mask label prefix of the motion person's clothes

# Independent random streams of one seed.
_CATEGORIES, _LOOK, _MOTION, _GARMENTS, _USER, _OTHER, _OTHER_CLOTHES, _OWN, _USER_LAYOUT = range(9)
# A whole-body outfit and the other one a user photo may show in its place.
_OTHER_WHOLE_BODY = {("dress",): ("top", "bottom"), ("top", "bottom"): ("dress",)}
OTHER_LAYOUT_SHARE = 0.5  # of whole-body samples whose user photo shows the other layout


@dataclass
class Sample:
    """One synthetic try-on example; see the module docstring. Images are uint8 RGB."""

    user: np.ndarray  # (H, W, 3)
    garments: dict[str, np.ndarray]  # category -> (H, W, 3) product shot on white
    motion: np.ndarray  # (T, H, W, 3)
    target: np.ndarray  # (T, H, W, 3)
    masks: dict[str, np.ndarray]  # category -> (T, H, W) bool, visible in target
    caption: str
    meta: dict
    # Extra, in memory only: category -> (H, W) bool, where the user's own garment of that
    # category is visible in `user` (its cut, or its category, may differ from the target's).
    user_masks: dict[str, np.ndarray] = field(default_factory=dict)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed % 2**64, stream])


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """(W, H) as ints; InputError unless both are even and at least MIN_SIDE."""
    try:
        width, height = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"size must be (width, height), got {size!r}") from None
    if width < MIN_SIDE or height < MIN_SIDE or width % 2 or height % 2:
        raise InputError(f"size must be even and at least {MIN_SIDE}x{MIN_SIDE}, got {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InputError(f"size {width}x{height}: a side may be at most {MAX_SIDE} pixels")
    return width, height


def _check_args(num_frames: int, fps: float) -> None:
    if int(num_frames) != num_frames or not 1 <= num_frames <= MAX_FRAMES:
        raise InputError(f"must be an integer from 1 to {MAX_FRAMES}, not {num_frames!r}", option="frames")
    if not (0 < fps <= MAX_FPS and np.isfinite(fps)):
        raise InputError(f"must be above 0 and at most {MAX_FPS:g}, not {fps!r}", option="fps")


def _check_categories(categories: tuple[str, ...]) -> tuple[str, ...]:
    cats = tuple(categories)
    if not cats or len(set(cats)) != len(cats) or any(c not in CATEGORIES for c in cats):
        raise InputError(f"categories must be distinct names from {CATEGORIES}, got {categories!r}")
    if "dress" in cats and len(cats) > 1:
        raise InputError("a dress cannot be combined with a top or a bottom")
    return tuple(c for c in CATEGORIES if c in cats)


def _pick_outfit(rng: np.random.Generator) -> tuple[str, ...]:
    return OUTFITS[colours.choice(rng, [w for _, w in OUTFITS])][0]


def _scenery(look: Appearance) -> tuple[tuple[int, int, int], ...]:
    """Colours a garment should keep away from: the backdrop and the skin."""
    return tuple(colours.BACKGROUND_COLOURS[c] for c in look.background["colours"]) + (tuple(look.skin),)


def _dress(
    rng: np.random.Generator, cats: tuple[str, ...], avoid: tuple[tuple[int, int, int], ...]
) -> dict[str, GarmentSpec]:
    out: dict[str, GarmentSpec] = {}
    for cat in cats:
        out[cat] = sample_garment(rng, cat, avoid + tuple(g.texture.rgb[0] for g in out.values()))
    return out


def _user_garments(
    seed: int, tryon: dict[str, GarmentSpec], avoid: tuple[tuple[int, int, int], ...]
) -> dict[str, GarmentSpec]:
    """What the user photo shows where the try-on garments go (see the module docstring)."""
    other_layout = _OTHER_WHOLE_BODY.get(tuple(tryon))
    if other_layout and _rng(seed, _USER_LAYOUT).random() < OTHER_LAYOUT_SHARE:
        return _dress(_rng(seed, _USER), other_layout, avoid + tuple(g.texture.rgb[0] for g in tryon.values()))
    rng = _rng(seed, _USER)
    users: dict[str, GarmentSpec] = {}
    for cat, g in tryon.items():
        users[cat] = restyle(rng, g, avoid + tuple(u.texture.rgb[0] for u in users.values()))
    return users


def _clothes(tryon: dict[str, GarmentSpec], own: dict[str, GarmentSpec], labelled: bool) -> list[Worn]:
    """The try-on garments plus the person's own clothes wherever those are not covered."""
    worn = [Worn(g, cat if labelled else None) for cat, g in tryon.items()]
    if "dress" not in tryon:
        worn += [Worn(g, None) for cat, g in own.items() if cat not in tryon]
    return worn


def _performer_clothes(tryon: dict[str, GarmentSpec], own: dict[str, GarmentSpec]) -> list[Worn]:
    """The motion person's clothes, each labelled `performer:<category>` (own clothes too)."""
    worn = [Worn(g, f"{_PERFORMER}{cat}") for cat, g in tryon.items()]
    if "dress" not in tryon:
        worn += [Worn(g, f"{_PERFORMER}{cat}") for cat, g in own.items() if cat not in tryon]
    return worn


def _mean_colours(frames: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Each performer label's mean RGB over where it shows in `frames`, by category."""
    return {label.removeprefix(_PERFORMER): [round(float(v), 2) for v in frames[mask].mean(axis=0)]
            for label, mask in masks.items() if label.startswith(_PERFORMER) and mask.any()}


def _add_product_shot(scene: Scene, sk: Skeleton, garment: GarmentSpec, size: tuple[int, int], fill: float) -> None:
    """Add `garment` alone (no body), centred and scaled to `fill` of the frame, to `scene`."""
    width, height = size
    before = len(scene.shapes)
    garment_alone(scene, sk, Worn(garment, None))
    added = scene.shapes[before:]
    pts = np.concatenate([s.verts.reshape(-1, 2) for s in added])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    k = min(fill * width / max(hi[0] - lo[0], 1e-3), fill * height / max(hi[1] - lo[1], 1e-3))
    shift = np.array([width / 2, height / 2]) - k * (lo + hi) / 2
    for s in added:  # a similarity transform keeps the texture in body units
        s.verts = s.verts * k + shift
        s.origin = s.origin * k + shift
        s.half_width *= k
        s.unit *= k


def _then_frame0(sk: Skeleton) -> Skeleton:
    """`sk` with its first frame repeated at the end (the user photo's pose, bit-identical)."""

    def more(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, a[:1]])

    joints = {k: more(v) for k, v in sk.joints.items()}
    return Skeleton(joints, more(sk.torso_down), more(sk.head_down), sk.scale, sk.props)


def _caption(look: Appearance, clothes: list[Worn], program: MotionProgram) -> str:
    order = {"dress": 0, "top": 1, "bottom": 2}
    worn = sorted(clothes, key=lambda w: (w.label is None, order[w.spec.category]))
    return f"{look.describe()} wearing {' and '.join(w.spec.describe() for w in worn)} {program.describe()}"


def make_sample(
    seed: int,
    size: tuple[int, int] = (64, 112),
    num_frames: int = 17,
    fps: float = 8.0,
    categories: tuple[str, ...] | None = None,
) -> Sample:
    """Generate sample `seed` in memory. `size` is (W, H). Deterministic in all arguments.

    `categories` None draws one of top / bottom / dress / top+bottom (single garments
    more often); a dress never comes with a top or a bottom.
    """
    size = check_size(size)
    _check_args(num_frames, fps)
    seed = int(seed)
    cats = _pick_outfit(_rng(seed, _CATEGORIES)) if categories is None else _check_categories(categories)
    times = np.arange(int(num_frames)) / float(fps)
    program = sample_motion(_rng(seed, _MOTION), duration=times[-1])

    look = sample_appearance(_rng(seed, _LOOK))
    tryon = _dress(_rng(seed, _GARMENTS), cats, _scenery(look))
    users = _user_garments(seed, tryon, _scenery(look))
    shown = tuple(g.texture.rgb[0] for g in (*tryon.values(), *users.values()))
    own = base_outfit(_rng(seed, _OWN), _scenery(look) + shown)

    rng_other = _rng(seed, _OTHER)
    other = sample_appearance(rng_other, avoid=look)
    other_tryon = _dress(_rng(seed, _OTHER_CLOTHES), _pick_outfit(rng_other), _scenery(other) + shown)
    other_own = base_outfit(
        rng_other, _scenery(other) + shown + tuple(g.texture.rgb[0] for g in other_tryon.values())
    )

    # Everything is drawn and shaded in one pass over one scene: frames 0..n-1 are the
    # target; frame n is the user photo (the same body in frame 0's pose, wearing the
    # user's garments in that frame only); then n frames of the motion person; then one
    # frame per product shot.
    n = len(times)
    clothes = _clothes(tryon, own, labelled=True)
    both = [Worn(g, c, (0, n)) for c, g in tryon.items()] + [Worn(g, c, (n, n + 1)) for c, g in users.items()]
    both += [w for w in clothes if w.label is None]
    sk = build_skeleton(look, program, times, size)
    scene = Scene(unit=sk.scale / 8)
    dress_figure(scene, _then_frame0(sk), look, both)
    other_sk = build_skeleton(other, program, times, size)
    scene.start, scene.unit = n + 1, other_sk.scale / 8
    dress_figure(scene, other_sk, other, _performer_clothes(other_tryon, other_own))
    still = build_skeleton(look, canonical_pose(), np.zeros(1), size)
    for i, garment in enumerate(tryon.values()):
        scene.start, scene.unit = 2 * n + 1 + i, still.scale / 8
        _add_product_shot(scene, still, garment, size, PRODUCT_FILL)
    total = 2 * n + 1 + len(tryon)
    ids = rasterise(scene, size, total)
    white = np.full((size[1], size[0], 3), WHITE, np.uint8)
    backdrops = [
        (0, n + 1, background(look.background, size)),
        (n + 1, 2 * n + 1, background(other.background, size)),
        (2 * n + 1, total, white),
    ]
    frames = shade(scene, ids, backdrops)
    masks = label_masks(scene, ids[: n + 1])
    target, user, motion = frames[:n], frames[n], frames[n + 1 : 2 * n + 1]
    performer_colours = _mean_colours(motion, label_masks(scene, ids[n + 1 : 2 * n + 1]))
    shots = dict(zip(tryon, frames[2 * n + 1 :]))

    caption = _caption(look, clothes, program)
    meta = {
        "generator": "engine.synth/1",
        "seed": seed,
        "size": list(size),
        "fps": float(fps),
        "frames": int(num_frames),
        "categories": list(cats),
        "caption": caption,
        "garment_specs": {c: g.to_dict() for c, g in tryon.items()},
        "user_garment_specs": {c: g.to_dict() for c, g in users.items()},
        "person": {"appearance": look.to_dict(), "own_clothes": {c: g.to_dict() for c, g in own.items()}},
        "motion_person": {
            "appearance": other.to_dict(),
            "garment_specs": {c: g.to_dict() for c, g in other_tryon.items()},
            "own_clothes": {c: g.to_dict() for c, g in other_own.items()},
            "garment_rgb": performer_colours,
        },
        "motion": program.to_dict(),
    }
    return Sample(
        user=user,
        garments=shots,
        motion=motion,
        target=target,
        masks={c: masks[c][:n] for c in cats},
        caption=caption,
        meta=meta,
        user_masks={c: masks[c][n] for c in users},
    )


def _write_videos(videos: dict[Path, np.ndarray], fps: float) -> None:
    """H.264 files at crf 12 (near-lossless ground truth), through engine.media's writer.

    All encoders are open at once: starting ffmpeg dominates the cost of such short clips.
    """
    with contextlib.ExitStack() as stack:
        writers = [
            (stack.enter_context(VideoWriter(path, fps, (frames.shape[2], frames.shape[1]), crf=12)), frames)
            for path, frames in videos.items()
        ]
        for writer, frames in writers:
            writer.write(frames)


def write_sample(sample: Sample, folder: Path) -> Path:
    """Write `sample` into `folder` (replaced if it exists) and return the folder.

    Files: user.png, garment_<category>.png, motion.mp4, target.mp4, caption.txt,
    masks.npz (category -> (T, H, W) bool, aligned with target.mp4's frames) and
    meta.json. The folder is assembled under a temporary name next to it and renamed
    into place, so it either appears complete or not at all.
    """
    folder = Path(folder)
    height, width = sample.target.shape[1:3]
    check_size((width, height))
    folder.parent.mkdir(parents=True, exist_ok=True)
    fps = float(sample.meta.get("fps", 8.0))
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        Image.fromarray(sample.user).save(tmp / "user.png")
        files = {}
        for cat, img in sample.garments.items():
            files[cat] = f"garment_{cat}.png"
            Image.fromarray(img).save(tmp / files[cat])
        _write_videos({tmp / "motion.mp4": sample.motion, tmp / "target.mp4": sample.target}, fps)
        (tmp / "caption.txt").write_text(sample.caption + "\n", encoding="utf-8")
        np.savez_compressed(tmp / "masks.npz", **{c: m.astype(bool) for c, m in sample.masks.items()})
        meta = dict(sample.meta)
        meta.update(
            masks="masks.npz",
            garments=files,
            fps=fps,
            frames=int(sample.target.shape[0]),
            size=[int(width), int(height)],
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        check_replaceable(folder, _holds_only_sample_files, "synthetic sample")
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, old / "sample")
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        full = isinstance(error, OSError) and error.errno in DISK_FULL
        if full or (isinstance(error, (OSError, RuntimeFailure)) and disk_is_full(folder.parent)):
            raise RuntimeFailure(f"{folder.parent}: disk full; {folder.name} was not written") from None
        raise
    return folder


def _holds_only_sample_files(folder: Path) -> bool:
    return holds_only(folder, lambda name: name in FILES or (name.startswith("garment_") and name.endswith(".png")))


def is_complete(folder: Path) -> bool:
    """Whether `folder` holds a whole written sample."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        return False
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        names = list(FILES) + list(meta["garments"].values())
    except (OSError, ValueError, KeyError, AttributeError):
        return False
    return all((folder / n).is_file() for n in names)


def write_dataset(
    out_dir: Path,
    count: int,
    seed: int,
    size: tuple[int, int] = (64, 112),
    num_frames: int = 17,
    fps: float = 8.0,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write samples 0..count-1 to `out_dir/sample_{i:05d}` and return their folders.

    Sample i is `make_sample(seed * 100_003 + i, ...)`, so datasets with different seeds
    share no sample while count <= 100_003. Complete sample folders already there are
    kept as they are (a killed run resumes). `progress(n)` is called after each sample
    with the number done so far.
    """
    check_int(count, "count", 1, SEED_STRIDE)
    check_seed(seed)
    size = check_size(size)
    _check_args(num_frames, fps)
    check_frames_fit_in_memory(int(num_frames), size[0], size[1], "data synth")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("not a folder", out_dir)
    make_folder(out_dir)
    paths = []
    for i in range(int(count)):
        folder = out_dir / f"sample_{i:05d}"
        if not is_complete(folder):
            for stale in out_dir.glob(f".{folder.name}.tmp-*"):  # left by a killed run
                shutil.rmtree(stale, ignore_errors=True)
            sample = make_sample(int(seed) * SEED_STRIDE + i, size, int(num_frames), float(fps))
            write_sample(sample, folder)
        paths.append(folder)
        if progress is not None:
            progress(i + 1)
    return paths
