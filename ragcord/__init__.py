"""ragcord: answers questions in Discord from your own documentation."""

__version__ = "0.1.0"
