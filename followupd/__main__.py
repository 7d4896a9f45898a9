"""``python -m followupd`` is the same as the ``followupd`` command."""

from followupd.cli import main

main()
