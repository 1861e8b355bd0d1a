"""``python -m foleykit.cli …`` (also what ``accelerate launch -m foleykit.cli train …`` runs)."""

from . import main

main()
