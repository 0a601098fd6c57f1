from __future__ import annotations

import itertools
import threading
import time

from devicelab import Collector, TokenStream
from devicelab._telemetry import Sampler

INTERVAL_S = 0.05


class WhoSamples(Collector):
    """Records which thread took each sample, and how long after the stream's last token."""

    name = "who"

    def __init__(self, stream: TokenStream) -> None:
        self.stream = stream

    def sample(self) -> dict[str, object]:  # type: ignore[override]
        times = self.stream.token_times
        since = time.perf_counter() - times[-1] if times else None
        return {"thread": threading.current_thread().name, "since_token_s": since}


def _trial(tokens: int) -> list[dict[str, object]]:
    stream = TokenStream()
    sampler = Sampler([WhoSamples(stream)], INTERVAL_S)
    sampler.start()
    try:
        sampler.begin("t", stream=stream)
        stream.sent()
        # Prefill: no tokens; wait (on a busy machine, as long as it takes) for the sampler's
        # thread to take one.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(s["thread"] == "devicelab-sampler" for s in sampler._samples):
                break
            time.sleep(0.005)
        for _ in range(tokens):
            stream.token()
            time.sleep(0.001)
        return sampler.end()
    finally:
        sampler.stop()


def test_while_tokens_flow_the_engine_thread_samples_between_them() -> None:
    samples = _trial(tokens=400)
    decode = [s for s in samples[1:-1] if s["phase"] == "decode"]  # begin/end: caller's
    by_engine = [s for s in decode if s["thread"] == threading.current_thread().name]
    assert any(s["phase"] == "prefill" and s["thread"] == "devicelab-sampler" for s in samples)
    assert len(by_engine) >= 2
    # The sampler's own thread only steps in when the tokens stall for an interval.
    for s in decode:
        if s["thread"] == "devicelab-sampler":
            since = s["since_token_s"]
            assert isinstance(since, float) and since >= INTERVAL_S * 0.9
    # Never in a burst: one sample an interval at most (a few ms of clock slack).
    times = [s["t"] for s in decode]
    assert all(
        isinstance(a, float) and isinstance(b, float) and b - a >= INTERVAL_S * 0.9
        for a, b in itertools.pairwise(times)
    )


def test_the_stream_is_let_go_when_the_trial_ends() -> None:
    stream = TokenStream()
    sampler = Sampler([], INTERVAL_S)
    sampler.start()
    try:
        sampler.begin("t", stream=stream)
        assert stream.on_token is not None
        sampler.end()
        assert stream.on_token is None
        stream.token()  # no trial open: nothing sampled, nothing raised
    finally:
        sampler.stop()
