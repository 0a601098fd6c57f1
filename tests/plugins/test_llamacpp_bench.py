"""Reading llama-bench's JSON report, and the flags that reproduce an engine load with it."""

from __future__ import annotations

import json

import pytest
from devicelab_llamacpp import LlamaCppEngine, llama_bench

# Two tests as `llama-bench -p 328 -n 0` and `-p 0 -n 64 -d 328 -r 3 -o json` print them (one
# report each; fields cut to the ones a reader needs, the second one's also onto one line).
REPORT = """\
[
  {
    "build_commit": "0c1e570",
    "build_number": 1,
    "cpu_info": "AMD EPYC",
    "model_filename": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "model_type": "llama ?B Q4_1",
    "n_batch": 512,
    "n_ubatch": 512,
    "n_threads": 2,
    "poll": 50,
    "flash_attn": 1,
    "n_prompt": 328,
    "n_gen": 0,
    "n_depth": 0,
    "avg_ns": 412345678,
    "avg_ts": 795.450000,
    "stddev_ts": 10.000000,
    "samples_ns": [ 402000000, 412000000, 423000000 ],
    "samples_ts": [ 815.92, 796.11, 775.41 ]
  },
  {"build_commit": "0c1e570", "n_threads": 2, "flash_attn": 1, "n_prompt": 0, "n_gen": 64, "n_depth": 328, "samples_ts": [ 148.5, 152.4, 150.2 ]}
]
"""


def test_the_report_gives_each_tests_work_and_its_speeds() -> None:
    pp, tg = llama_bench.parse_json(REPORT)
    assert (pp.kind, pp.n_prompt, pp.n_depth, pp.tokens) == ("pp", 328, 0, 328)
    assert (tg.kind, tg.n_gen, tg.n_depth, tg.tokens) == ("tg", 64, 328, 64)
    assert pp.samples_ts == (815.92, 796.11, 775.41)
    assert pp.median_ts == 796.11  # the middle repetition, not llama-bench's mean
    assert tg.median_ts == 150.2
    assert tg.n_threads == 2 and tg.flash_attn == 1 and tg.build_commit == "0c1e570"


def test_an_empty_report_has_no_tests() -> None:
    assert llama_bench.parse_json("[\n\n]\n") == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("| model | size |", "not JSON.*-o json"),
        ('{"n_prompt": 1}', "a list of tests"),
        ('[{"n_prompt": 8, "n_gen": 0, "samples_ts": [1.0]}]', "n_threads"),
        ('[{"n_prompt": 8, "n_gen": 8, "n_threads": 2, "samples_ts": [1.0]}]', "neither"),
        ('[{"n_prompt": 8, "n_gen": 0, "n_threads": 2, "samples_ts": []}]', "0 samples"),
    ],
)
def test_output_that_is_not_a_report_is_a_readable_error(text: str, match: str) -> None:
    with pytest.raises(llama_bench.LlamaBenchOutputError, match=match):
        llama_bench.parse_json(text)


def test_flags_reproduce_the_engines_context() -> None:
    engine = LlamaCppEngine(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        LlamaCppEngine.Options(threads=2, n_batch=256, n_ubatch=512, extra_buffer_types=False),
    )
    context = engine.context_params()
    assert context["n_ubatch"] == 256  # llama.cpp caps the micro-batch at the batch
    assert context["threads_batch"] == 2
    assert llama_bench.flags(context) == [
        *("-t", "2", "-b", "256", "-ub", "256", "-fa", "off", "--poll", "50"),
        *("-lm", "mmap", "--repack", "0"),
    ]
    on = LlamaCppEngine(None, None, LlamaCppEngine.Options(flash_attn=True))  # type: ignore[arg-type]
    assert "-fa on" in " ".join(llama_bench.flags(on.context_params()))
    json.dumps(context)  # provenance is JSON
