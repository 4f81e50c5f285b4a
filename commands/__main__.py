from commands.cli import main

main(prog_name="python -m commands")
