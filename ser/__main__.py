from ser.console import main

main()
