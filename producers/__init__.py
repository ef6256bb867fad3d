"""memstream producers (built by the streaming issue)."""
