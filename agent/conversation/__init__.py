"""What a session says and remembers: its context budget and running summary."""
