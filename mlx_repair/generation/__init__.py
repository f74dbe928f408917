"""The model side: prompts, stop checks, code extraction, batched sampling over mlx-lm's
BatchGenerator, and the writer the loop calls."""
