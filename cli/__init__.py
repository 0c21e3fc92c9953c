"""The gridctl command line: parsing, sweeps, code bundles and the backends it drives."""
