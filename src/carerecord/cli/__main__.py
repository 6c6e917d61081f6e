"""``python -m carerecord.cli``."""

from carerecord.cli import main

main()
