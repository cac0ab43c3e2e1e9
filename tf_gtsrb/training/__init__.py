"""Training: compiling, fitting, checkpointing, resuming and distribution."""
