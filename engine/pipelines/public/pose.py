"""The driving videos of Wan-Animate, extracted from a motion video with transformers' models.

Per frame: RT-DETR finds the person (the highest-scoring "person" box; a frame without one
keeps the previous frame's box, and a video without any uses the whole frame), ViTPose puts
the 17 COCO body keypoints in that box. From those:

- the pose video: the skeleton drawn as Wan-Animate's preprocessing draws it, OpenPose's
  18-point body (COCO's 17 plus the neck between the shoulders) with OpenPose's limb and
  joint colours on black, at the output size;
- the face video: a square crop around the face keypoints (nose, eyes, ears), resized to
  the size of the pipeline's motion encoder (512 for Wan2.2-Animate-14B).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

BATCH = 16
PERSON_THRESHOLD = 0.3
KEYPOINT_THRESHOLD = 0.3
# OpenPose body order, as COCO keypoint indices (None: the neck, the shoulders' midpoint).
OPENPOSE_FROM_COCO = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
OPENPOSE_LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
                  (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17)]
OPENPOSE_COLOURS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
                    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255),
                    (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)]
FACE_KEYPOINTS = [0, 1, 2, 3, 4]  # COCO: nose, eyes, ears


@dataclass
class DrivingVideos:
    """What WanAnimatePipeline is driven by: one pose frame and one face crop per output frame."""

    pose: list[Image.Image]
    face: list[Image.Image]
    keypoints: np.ndarray  # (frames, 17, 2) pixel coordinates
    scores: np.ndarray  # (frames, 17)


class PoseExtractor:
    """RT-DETR person boxes, then ViTPose keypoints, for a stack of frames."""

    def __init__(self, detector, detector_processor, keypoints, keypoints_processor, device: torch.device | str = "cpu"):
        self.detector, self.detector_processor = detector, detector_processor
        self.keypoints_model, self.keypoints_processor = keypoints, keypoints_processor
        self.device = torch.device(device)

    @torch.no_grad()
    def person_boxes(self, frames: np.ndarray) -> np.ndarray:
        """(frames, 4) boxes as x, y, width, height: the most confident person in each frame."""
        height, width = frames.shape[1:3]
        found: list[np.ndarray | None] = []
        person = _person_label(self.detector.config)
        for start in range(0, len(frames), BATCH):
            batch = [Image.fromarray(frame) for frame in frames[start:start + BATCH]]
            inputs = self.detector_processor(images=batch, return_tensors="pt").to(self.device, self.detector.dtype)
            outputs = self.detector(**inputs)
            results = self.detector_processor.post_process_object_detection(
                outputs, target_sizes=[(height, width)] * len(batch), threshold=PERSON_THRESHOLD)
            for result in results:
                keep = result["labels"] == person
                if not keep.any():
                    found.append(None)
                    continue
                best = result["scores"][keep].argmax()
                x0, y0, x1, y1 = result["boxes"][keep][best].float().cpu().numpy()
                found.append(_clip_box(x0, y0, x1, y1, width, height))
        return _fill_gaps(found, width, height)

    @torch.no_grad()
    def body_keypoints(self, frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(frames, 17, 2) keypoints in pixels and (frames, 17) scores, one person per frame."""
        points, scores = [], []
        for start in range(0, len(frames), BATCH):
            batch = [Image.fromarray(frame) for frame in frames[start:start + BATCH]]
            batch_boxes = [[box.tolist()] for box in boxes[start:start + BATCH]]
            inputs = self.keypoints_processor(batch, boxes=batch_boxes, return_tensors="pt").to(
                self.device, self.keypoints_model.dtype)
            outputs = self.keypoints_model(**inputs)
            results = self.keypoints_processor.post_process_pose_estimation(outputs, boxes=batch_boxes)
            for per_image in results:
                points.append(per_image[0]["keypoints"].float().cpu().numpy())
                scores.append(per_image[0]["scores"].float().cpu().numpy())
        return np.stack(points), np.stack(scores)

    def driving_videos(self, frames: np.ndarray, face_size: int) -> DrivingVideos:
        """The pose video (at the frames' size) and the face video (`face_size` square) of `frames`."""
        height, width = frames.shape[1:3]
        boxes = self.person_boxes(frames)
        points, scores = self.body_keypoints(frames, boxes)
        pose = [render_skeleton(p, s, (width, height)) for p, s in zip(points, scores)]
        face = [crop_face(frame, p, s, box, face_size) for frame, p, s, box in zip(frames, points, scores, boxes)]
        return DrivingVideos(pose, face, points, scores)


def _person_label(config) -> int:
    for index, name in config.id2label.items():
        if str(name).lower() == "person":
            return int(index)
    return 0


def _clip_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> np.ndarray | None:
    x0, x1 = np.clip([x0, x1], 0, width)
    y0, y1 = np.clip([y0, y1], 0, height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float32)


def _fill_gaps(found: list[np.ndarray | None], width: int, height: int) -> np.ndarray:
    """A frame without a person keeps the previous frame's box (the next one's at the start)."""
    whole = np.array([0, 0, width, height], dtype=np.float32)
    first = next((box for box in found if box is not None), whole)
    boxes, last = [], first
    for box in found:
        last = box if box is not None else last
        boxes.append(last)
    return np.stack(boxes)


def openpose_points(points: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO's 17 keypoints → OpenPose's 18 (the neck added), with their scores."""
    out_points = np.zeros((18, 2), dtype=np.float32)
    out_scores = np.zeros(18, dtype=np.float32)
    for index, coco in enumerate(OPENPOSE_FROM_COCO):
        if coco is None:  # the neck
            out_points[index] = (points[5] + points[6]) / 2
            out_scores[index] = min(scores[5], scores[6])
        else:
            out_points[index], out_scores[index] = points[coco], scores[coco]
    return out_points, out_scores


def render_skeleton(points: np.ndarray, scores: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The OpenPose body skeleton on black: limbs at 60% of their colour, joints at full colour."""
    width, height = size
    canvas = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    stick = max(1, round(4 * min(width, height) / 512))
    body, confidence = openpose_points(points, scores)
    visible = confidence >= KEYPOINT_THRESHOLD
    for colour, (a, b) in zip(OPENPOSE_COLOURS, OPENPOSE_LIMBS):
        if visible[a] and visible[b]:
            dim = tuple(int(c * 0.6) for c in colour)
            draw.line([tuple(body[a]), tuple(body[b])], fill=dim, width=2 * stick)
    for index in np.flatnonzero(visible):
        x, y = body[index]
        draw.ellipse([x - stick, y - stick, x + stick, y + stick], fill=OPENPOSE_COLOURS[index])
    return canvas


def face_box(points: np.ndarray, scores: np.ndarray, person: np.ndarray) -> tuple[float, float, float]:
    """Centre x, centre y and side of a square around the face (the top of the person box if none is seen)."""
    face = points[FACE_KEYPOINTS][scores[FACE_KEYPOINTS] >= KEYPOINT_THRESHOLD]
    x, y, width, height = person
    head = max(width / 3, 8.0)
    if len(face) == 0:
        return x + width / 2, y + head / 2, head
    centre = face.mean(axis=0)
    spread = float(np.ptp(face, axis=0).max()) if len(face) > 1 else 0.0
    return float(centre[0]), float(centre[1]), max(2.0 * spread, head * 0.6, 8.0)


def crop_face(frame: np.ndarray, points: np.ndarray, scores: np.ndarray, person: np.ndarray,
              size: int) -> Image.Image:
    """A `size`-square crop around the face, black beyond the frame's edges."""
    cx, cy, side = face_box(points, scores, person)
    half = side / 2
    box = tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    return Image.fromarray(frame).crop(box).resize((size, size), Image.BILINEAR)
