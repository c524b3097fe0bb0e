"""Durable timers and periodic jobs: the port consumers schedule with, and what fires them."""
