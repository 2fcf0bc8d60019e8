"""High availability: the Redis lease that says who should lead."""
