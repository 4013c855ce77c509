"""A plain Python crew: an ``analyst`` counts words with a tool, an ``editor`` writes a summary."""
