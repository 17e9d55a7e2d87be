"""streamers package."""
