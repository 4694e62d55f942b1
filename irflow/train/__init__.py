"""Training: ranking losses and the code that fits models to teacher signals."""
