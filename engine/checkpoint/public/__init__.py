"""The public-weights route: its parts and presets, its loader (a folder or the Hub) and its tiny copy."""

from engine.checkpoint.public.loading import is_route_source, resolve_route, save_tiny_route
from engine.checkpoint.public.presets import PUBLIC, PUBLIC_TINY, ROUTE_PRESETS, RoutePreset
from engine.checkpoint.public.route import LoadedRoute, PublicRoute, load_route

__all__ = ["is_route_source", "resolve_route", "save_tiny_route", "PUBLIC", "PUBLIC_TINY", "ROUTE_PRESETS",
           "RoutePreset", "LoadedRoute", "PublicRoute", "load_route"]
