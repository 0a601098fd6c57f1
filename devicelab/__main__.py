"""``python -m devicelab`` runs the command line."""

from devicelab._cli import main

main()
