"""Scorers: fine-tuned Inception v3 (Inception Score) and ViT (Transformer Score)."""
