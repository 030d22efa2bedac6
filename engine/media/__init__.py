"""Media layer: image and video reading, fitting to a size and frame rate, MP4 writing."""

from engine.media.geometry import (
    SizeDecision,
    choose_output_size,
    covering_multiple,
    crop_center,
    fit_frames,
    fit_image,
    pad_edges,
    parse_size,
    round_to_multiple,
)
from engine.media.image import MAX_IMAGE_PIXELS, load_image, save_image, to_rgb
from engine.media.video_reader import (
    VideoFrames,
    VideoInfo,
    probe_video,
    read_video,
    resample_indices,
    video_fps,
)
from engine.media.video_writer import VideoWriter, write_video

__all__ = [
    "MAX_IMAGE_PIXELS",
    "SizeDecision",
    "VideoFrames",
    "VideoInfo",
    "VideoWriter",
    "choose_output_size",
    "covering_multiple",
    "crop_center",
    "fit_frames",
    "fit_image",
    "load_image",
    "pad_edges",
    "parse_size",
    "probe_video",
    "read_video",
    "resample_indices",
    "round_to_multiple",
    "save_image",
    "to_rgb",
    "video_fps",
    "write_video",
]
