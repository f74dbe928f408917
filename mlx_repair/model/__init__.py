"""From a --model spec to a loaded MLX model: packaged models, GGUF import, hub snapshots,
quantization, and the OpenBLAS preload for Linux CPUs."""
