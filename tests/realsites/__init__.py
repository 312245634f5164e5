"""Real documentation sites (Debian's doc packages) for testing the crawler beyond our own fixture site."""
