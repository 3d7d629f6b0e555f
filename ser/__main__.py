from ser.commands.console import main

main()
