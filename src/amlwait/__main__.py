from amlwait.cli import main

main()
