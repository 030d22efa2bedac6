"""`tryon data curate`: FashionChameleon's four-stage curation of raw videos into training samples."""

from engine.curate.config import CurateConfig
from engine.curate.pipeline import CurationModels, CurationSummary, curate

__all__ = ["CurateConfig", "CurationModels", "CurationSummary", "curate"]
