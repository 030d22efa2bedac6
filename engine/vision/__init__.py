"""Local vision models through transformers, each loaded from a folder: a VLM, image/text embedders, a person detector."""
