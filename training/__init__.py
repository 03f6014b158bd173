"""astdiffuse training: corpus, tokenizer training, AST-aware masking, fine-tuning, evaluation."""
