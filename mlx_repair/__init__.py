"""mlx-repair: draft, run, repair, train and measure small code models on MLX."""

__version__ = "0.1.0"
