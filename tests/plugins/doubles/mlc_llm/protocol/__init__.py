"""Test double of mlc_llm.protocol (only the conversation protocol)."""
