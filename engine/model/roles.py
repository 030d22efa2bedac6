"""What each in-context image is to CondNet: its role, marked by a learned role embedding."""

from __future__ import annotations

ROLES = ("user", "top", "bottom", "dress", "unknown")
GARMENT_CATEGORIES = ("top", "bottom", "dress")
MAX_GARMENTS = 4


def role_id(role: str) -> int:
    return ROLES.index(role)
