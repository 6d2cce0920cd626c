"""``python -m llem_cli`` runs the same command tree as ``llem``."""

from llem_cli.cli import main

if __name__ == "__main__":
    main()
