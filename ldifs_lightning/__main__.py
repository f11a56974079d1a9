from ldifs_lightning.cli import main

main()
