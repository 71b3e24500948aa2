from openclone.cli import main

main()
