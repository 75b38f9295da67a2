"""``python -m pipeline`` runs the ``exemplars`` command (torchrun needs a module)."""

from .cli import main

main()
