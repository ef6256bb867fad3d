"""memstream streams (built by the streaming issue)."""
