"""Reading articles into documents: file loaders, the sentence-aware chunker, token counting."""
