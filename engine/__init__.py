"""The tryon engine: checkpoints, models, pipelines, media, training. No CLI code here."""
