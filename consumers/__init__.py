"""What follows model-updated events, drift alerts and dead letters: subscribers (library and
CLI) and the in-process adapter hot reloader."""
