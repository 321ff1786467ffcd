"""Training small causal LMs that really write TACO code: the same official prompts the generation
stage feeds (``harness.data.prompts.build_prompt``), each followed by a reference solution and an end.

``corpus`` turns problems into (prompt, completion) examples; ``tokenizer`` builds a byte-level
tokenizer in-process; ``recipe`` holds the model shape and training settings (one for the CPU demo,
one scaled for a GPU); ``train`` trains a Llama-style model, saves it as an ordinary Hugging Face
directory, and caches it by a hash of everything that decides its weights.

torch, tokenizers and transformers are imported inside functions, so importing this package costs nothing.
"""
