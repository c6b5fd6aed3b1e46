"""kaito-runtime-transformers: HF transformers serving with peft adapters, and `kaito tune`."""
