"""Building a MISALIGNTRADE-style benchmark from seed prompts with local models (issue 5)."""
