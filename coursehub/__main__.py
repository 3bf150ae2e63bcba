from coursehub.cli import main

main()
