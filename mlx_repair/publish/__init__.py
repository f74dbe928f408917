"""An adapter that travels: export for mlx-lm, PEFT or fused, its model card, and the push
to the Hugging Face hub."""
