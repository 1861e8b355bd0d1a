"""foleykit: generate the sound of a picture."""

from __future__ import annotations

__version__ = "0.1.0"
