"""Finding text: sentence embeddings and the hybrid BM25 + dense retriever. Imports runner.core only."""
