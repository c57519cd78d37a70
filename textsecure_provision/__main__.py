from textsecure_provision.cli.main import main

main()
