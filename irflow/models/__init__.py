"""Model resolution (hub ids, local directories, the packaged MiniLM) and the bi-encoder."""
