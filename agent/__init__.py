"""The runtime that executes one experiment, locally or on a node.

It must not import ``gridctl.cli``: nodes install it with few dependencies.
"""
