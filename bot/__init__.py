"""The Discord bot: adapts ragcord's Ask, crawls and feedback to discord.py. No answering logic here."""
