from commands.cli import main
from commands.installation import command_prefix

main(prog_name=command_prefix())
