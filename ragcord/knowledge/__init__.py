"""The knowledge base: chunking, embedders and stores."""
