"""CLIP models, encoders, tokenisation, training, retrieval evaluation and its metrics."""
