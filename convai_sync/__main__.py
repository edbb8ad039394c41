from convai_sync.cli import main

main()
