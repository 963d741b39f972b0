"""Data: sources, decoding and caching, labels, duplicates, splits, inspection."""
