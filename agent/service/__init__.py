"""The local backend's long-running service: the registry and the dispatcher that starts
queued experiments on this machine. Nodes never import it."""
