"""What the CLI and every agent role share: experiment specs, the bucket contract, the state
machine, stores, units, resources and scheduling. Imports nothing from the other roles."""
