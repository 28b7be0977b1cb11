"""Writing an index: options, the build stages, updates, and the writer's folder layout."""
