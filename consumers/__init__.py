"""memstream consumers (built by the streaming issue)."""
