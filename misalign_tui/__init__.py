"""misalign-tui: an offline profiler of alignment trade-offs in local GGUF models (MisAlign-Profile)."""

__version__ = "0.1.0"
