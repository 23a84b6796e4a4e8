"""Subcommands of ``hipcg``: each module here defines ``register(subparsers)``.

A stage adds its command by adding a module; :mod:`hipcg.cli` discovers them, so commands do
not have to edit a shared file.  Handlers are thin: parse arguments, call the stage's plain
function, print a summary, return an exit code.
"""
