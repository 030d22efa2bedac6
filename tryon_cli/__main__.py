"""`python -m tryon_cli` (and `torchrun -m tryon_cli`): the tryon command."""

from tryon_cli.main import app

app()
