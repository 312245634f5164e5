"""One cog per concern: asking (ask), running the knowledge base (admin)."""
