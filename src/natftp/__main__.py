from natftp.cli import main

main()
