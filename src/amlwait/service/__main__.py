"""``python -m amlwait.service [OPTIONS]`` runs ``amlwait serve``."""

from amlwait.service.cli import main

main()
