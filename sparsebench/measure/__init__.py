"""One measurement per module: sparsity, size, macs, memory, latency, energy, accuracy."""
