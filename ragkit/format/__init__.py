"""The index folder on disk: the manifest (the commit point), file checksums, durable writes."""
