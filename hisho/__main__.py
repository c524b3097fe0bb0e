from hisho.cli import main

main()
