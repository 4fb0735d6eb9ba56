from reelgraph.lightning_modules.cli import main

main()
