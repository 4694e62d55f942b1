"""Dataset sources (ir_datasets ids, local files, the embedded synthetic collection) and Arrow tables."""
