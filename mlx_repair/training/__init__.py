"""LoRA/DoRA training on the mined records: settings and presets, the resumable loop,
checkpoints and the manifest; and the critic, trained on judged samples."""
