"""The `ragcord` command, outside the core: it starts the processes and talks to the admin API."""
