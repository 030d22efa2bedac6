"""One generation request on the public route: inputs fitted to the output, then the stages."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from engine.errors import RuntimeFailure
from engine.media import fit_image, read_video
from engine.checkpoint.public.route import LoadedRoute, RouteInputs


def render_request(
    model: LoadedRoute,
    request,
    user: Image.Image,
    garments: list[tuple[str, Image.Image]],
    plan,
    anchor_first_frame: bool,
    report,
) -> np.ndarray:
    """`request` (a engine.api.generate.GenerateRequest) planned as `plan` (a engine.api.generate.OutputPlan): the frames."""
    target = (plan.width, plan.height)
    motion = None
    if request.motion is not None:
        motion = read_video(request.motion, fps=plan.fps, num_frames=plan.num_frames, size=target, fit="cover",
                            min_frames=2)
    inputs = RouteInputs(
        user=fit_image(user, target, "cover"),
        garments=[(role, fit_image(image, target, "contain")) for role, image in garments],
        prompt=request.prompt,
        motion=motion,
        size=target,
        num_frames=plan.num_frames,
        steps=request.steps,
        guidance=request.guidance,
        seed=request.seed,
    )
    try:
        return model.pipeline.render(inputs, anchor_first_frame, report)
    except torch.OutOfMemoryError:
        raise RuntimeFailure(
            f"out of memory on {model.pipeline.runtime.device}: lower --size or --seconds, or use --offload model "
            "(or group), --fp8-weights"
        ) from None
