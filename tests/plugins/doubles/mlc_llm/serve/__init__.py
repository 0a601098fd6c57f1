"""Test double of mlc_llm.serve (only its config module)."""
