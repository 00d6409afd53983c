"""The Textual app: a face of the core, never the other way round."""
