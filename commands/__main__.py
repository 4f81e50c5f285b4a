from commands.cli import main

main()  # its name in usage lines and hints: commands.installation.command_prefix()
