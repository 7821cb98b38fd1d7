"""``python -m portanet`` runs the command line."""

from portanet.cli import main

main()
