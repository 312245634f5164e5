"""Answering questions from the knowledge base: answerers, prompts, citations, the Ask service."""
