"""The public-weights route: real people today, from diffusers and transformers pipelines on Hub weights."""

from engine.public.loading import is_route_source, resolve_route, save_tiny_route
from engine.public.presets import PUBLIC, PUBLIC_TINY, ROUTE_PRESETS, RoutePreset
from engine.public.route import LoadedRoute, PublicRoute, load_route

__all__ = ["is_route_source", "resolve_route", "save_tiny_route", "PUBLIC", "PUBLIC_TINY", "ROUTE_PRESETS",
           "RoutePreset", "LoadedRoute", "PublicRoute", "load_route"]
