from coursehub.entry_point import main

main()
