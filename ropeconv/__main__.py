from ropeconv.cli import main

main()
