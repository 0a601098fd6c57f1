"""``python -m devicelab`` runs the command line."""

from devicelab.cli import main

main()
