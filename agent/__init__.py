"""The runtime that executes experiments, in four roles: ``core`` (shared with the CLI),
``runner`` (one attempt of one experiment), ``service`` (the local backend's dispatcher)
and ``node`` (the agent on an EC2 instance).

It must not import ``gridctl.cli``: nodes install it with few dependencies.
"""
