"""The public route's stages (one diffusers pipeline call each) and its pose and face extraction."""
