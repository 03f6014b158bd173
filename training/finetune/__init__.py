"""Fine-tuning and training from scratch: arguments, data, collator, the loop with checkpoints
and resume, metrics, LoRA and torchrun; `python -m training.finetune --help`."""
