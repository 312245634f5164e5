"""The answer-quality suite on real documentation: data (sites.yaml, questions.yaml) and its loader."""
