"""The public-weights route: its parts and presets, its loader (a folder or the Hub) and its tiny copy.

Each name loads its module when first used (the presets need no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "loading": ["is_route_source", "resolve_route", "save_tiny_route"],
    "presets": ["PUBLIC", "PUBLIC_TINY", "ROUTE_PRESETS", "RoutePreset"],
    "route": ["LoadedRoute", "PublicRoute", "load_route"],
})

if TYPE_CHECKING:
    from engine.checkpoint.public.loading import is_route_source, resolve_route, save_tiny_route
    from engine.checkpoint.public.presets import PUBLIC, PUBLIC_TINY, ROUTE_PRESETS, RoutePreset
    from engine.checkpoint.public.route import LoadedRoute, PublicRoute, load_route
