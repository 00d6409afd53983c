"""The headless core. Nothing under this package may import textual: the CLI, scripts and notebooks use it too."""
