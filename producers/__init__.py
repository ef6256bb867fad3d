"""Clients that publish memory events: the producer library and its sources (files, stdin, a
watched directory)."""
