"""Test double of mlc_llm.tokenizers: Tokenizer(path).encode / .decode, one token a character."""


class Tokenizer:
    def __init__(self, tokenizer_path):
        self.path = tokenizer_path

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, token_ids):
        return "".join(chr(t) for t in token_ids)
