"""Pose and face videos from a motion video: RT-DETR boxes, ViTPose keypoints, skeleton, face crops."""

import numpy as np
import pytest
import torch

from engine.media import read_video
from engine.checkpoint.public.loading import load_part, resolve_route
from engine.pipelines.public.pose import (OPENPOSE_COLOURS, PoseExtractor, _fill_gaps, crop_face, openpose_points,
                                render_skeleton)
from engine.checkpoint.public.tiny import TINY_FACE_SIZE


def standing_person(width=96, height=160):
    """COCO keypoints of an upright person, all confident."""
    cx = width / 2
    points = np.array([
        [cx, 20], [cx - 4, 16], [cx + 4, 16], [cx - 8, 18], [cx + 8, 18],  # nose, eyes, ears
        [cx - 16, 40], [cx + 16, 40], [cx - 20, 65], [cx + 20, 65], [cx - 22, 90], [cx + 22, 90],  # arms
        [cx - 10, 90], [cx + 10, 90], [cx - 10, 120], [cx + 10, 120], [cx - 10, 150], [cx + 10, 150],  # legs
    ], dtype=np.float32)
    return points, np.ones(17, dtype=np.float32)


def test_openpose_order_adds_the_neck_between_the_shoulders():
    points, scores = standing_person()
    body, confidence = openpose_points(points, scores)
    assert body.shape == (18, 2) and confidence.shape == (18,)
    np.testing.assert_allclose(body[1], (points[5] + points[6]) / 2)
    np.testing.assert_allclose(body[2], points[6])  # OpenPose's right shoulder is COCO's right shoulder


def test_skeleton_is_drawn_in_openpose_colours_on_black_and_skips_unsure_joints():
    points, scores = standing_person()
    image = np.asarray(render_skeleton(points, scores, (96, 160)))
    assert image.shape == (160, 96, 3)
    x, y = points[0].astype(int)
    assert tuple(image[y, x]) == OPENPOSE_COLOURS[0]  # the nose joint
    assert tuple(image[5, 5]) == (0, 0, 0)
    unsure = scores.copy()
    unsure[15:] = 0.0  # ankles unseen: the shins are not drawn
    shin = np.asarray(render_skeleton(points, unsure, (96, 160)))[135, int(points[15][0])]
    assert tuple(shin) == (0, 0, 0) and tuple(image[135, int(points[15][0])]) != (0, 0, 0)


def test_face_crop_is_a_square_of_the_requested_size_around_the_face():
    points, scores = standing_person()
    frame = np.zeros((160, 96, 3), dtype=np.uint8)
    frame[10:30, 40:56] = 255  # a white face around the face keypoints
    crop = np.asarray(crop_face(frame, points, scores, np.array([20, 5, 56, 150]), 16))
    assert crop.shape == (16, 16, 3) and crop[8, 8].tolist() == [255, 255, 255]


def test_frames_without_a_person_keep_the_nearest_box_and_a_video_without_any_uses_the_whole_frame():
    box = np.array([1, 2, 3, 4], dtype=np.float32)
    filled = _fill_gaps([None, box, None], 96, 160)
    np.testing.assert_array_equal(filled, [box, box, box])
    np.testing.assert_array_equal(_fill_gaps([None, None], 96, 160), [[0, 0, 96, 160]] * 2)


@pytest.fixture(scope="module")
def extractor(tiny_route):
    found = resolve_route(str(tiny_route))
    parts = [load_part(name, found.parts[name], found.folders[name], torch.float32) for name in ("detector", "keypoints")]
    (detector, detector_processor), (keypoints, keypoints_processor) = parts
    return PoseExtractor(detector, detector_processor, keypoints, keypoints_processor)


@pytest.mark.parametrize("case", ["case1", "case4"])
def test_driving_videos_of_a_real_motion_video_have_one_frame_per_output_frame(extractor, real_cases, case):
    frames = read_video(real_cases / case / "target.mp4", fps=8, num_frames=10, size=(64, 96), fit="cover")
    videos = extractor.driving_videos(frames, TINY_FACE_SIZE)
    assert len(videos.pose) == len(videos.face) == 10
    assert {image.size for image in videos.pose} == {(64, 96)}
    assert {image.size for image in videos.face} == {(TINY_FACE_SIZE, TINY_FACE_SIZE)}
    assert videos.keypoints.shape == (10, 17, 2) and videos.scores.shape == (10, 17)
    assert np.isfinite(videos.keypoints).all()
