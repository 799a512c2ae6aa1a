"""VAE / VAE-GAN training on MNIST and Fashion-MNIST, callable by Ray Tune and by a CLI."""
