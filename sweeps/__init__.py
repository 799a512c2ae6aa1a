"""Sweeps: Optuna search over VAE / VAE-GAN configurations on Ray Tune, logged to MLflow."""
