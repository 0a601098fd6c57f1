"""Test double of mlc_llm.serve.config.EngineConfig: the fields devicelab touches."""


class EngineConfig:
    def __init__(self, *, prefix_cache_mode="radix", max_single_sequence_length=None, **others):
        if prefix_cache_mode not in ("radix", "disable"):
            raise ValueError(f"unknown prefix_cache_mode {prefix_cache_mode!r}")
        self.prefix_cache_mode = prefix_cache_mode
        self.max_single_sequence_length = max_single_sequence_length
        self.others = others
