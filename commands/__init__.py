"""The application around the log: the CLI, pure rules, the Gemini port, the worker, operator
actions, read-only views and integrations, one sub-package each (see the README's Architecture).

Imports point one way: ``cli`` -> ``integrations`` -> ``views`` / ``actions`` / ``worker`` ->
``gemini`` / ``rules`` -> ``projections`` -> ``eventlog``. Nothing imports ``cli``.
"""

__all__: list[str] = []
