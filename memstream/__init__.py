"""memstream: the command line over the learner and the stream (``memstream --help``)."""
