from ser.commands import main

main()
