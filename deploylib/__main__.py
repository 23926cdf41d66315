from deploylib.cli import main

main()
