"""Workers: take jobs from the Redis stream, validate them again, render, store the image."""
