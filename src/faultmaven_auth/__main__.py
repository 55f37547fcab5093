"""`python -m faultmaven_auth` runs the command-line interface."""

from faultmaven_auth.cli import main

main()
