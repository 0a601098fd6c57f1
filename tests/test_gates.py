"""Regression gates: checks, Mann-Whitney U, comparing runs, the CLI and the pytest options."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from wordsplugin import run_cli

import devicelab
from devicelab import _gates as gates
from devicelab._gates import GateSpecError, mann_whitney_greater, parse_check

pytest_plugins = ["pytester"]

GATES = Path(__file__).parent / "data" / "gates"
BASE = GATES / "baseline"


def comparison(candidate: str, *specs: str, alpha: float = 0.01) -> gates.Comparison:
    return gates.compare(
        devicelab.load_run(BASE),
        devicelab.load_run(GATES / candidate),
        [parse_check(s) for s in specs],
        alpha,
    )


# --- Mann-Whitney U against hand-computed values --------------------------------------------


def test_mann_whitney_exact_fully_separated() -> None:
    # All 9 pairs favour x: U = 9, and only 1 of the C(6, 3) = 20 orderings gives U >= 9.
    assert mann_whitney_greater([4, 5, 6], [1, 2, 3]) == (9.0, pytest.approx(1 / 20))
    assert mann_whitney_greater([1, 2, 3], [4, 5, 6]) == (0.0, pytest.approx(1.0))
    # 6 against 6: 1 / C(12, 6) = 1 / 924; 5 against 5: 1 / 252.
    assert mann_whitney_greater(list(range(7, 13)), list(range(1, 7)))[1] == pytest.approx(1 / 924)
    assert mann_whitney_greater([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])[1] == pytest.approx(1 / 252)


def test_mann_whitney_exact_interleaved() -> None:
    # x = 2, 4, 6 against y = 1, 3, 5: U = 1 + 2 + 3 = 6. The U distribution for 3 and 3
    # counts 1, 1, 2, 3, 3, 3, 3, 2, 1, 1 orderings for U = 0..9, so P(U >= 6) = 7 / 20.
    assert mann_whitney_greater([2, 4, 6], [1, 3, 5]) == (6.0, pytest.approx(7 / 20))


def test_mann_whitney_normal_approximation_with_ties() -> None:
    # x = 2, 3, 3 against y = 1, 1, 2: U = 2 + 0.5 + 3 + 3 = 8.5, mean 4.5. Three tie groups of
    # two: sum(t^3 - t) = 18, var = 9/12 * (7 - 18/30) = 4.8; z = (8.5 - 4.5 - 0.5)/sqrt(4.8).
    u, p = mann_whitney_greater([2, 3, 3], [1, 1, 2])
    z = 3.5 / math.sqrt(4.8)
    assert u == 8.5
    assert p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    assert p == pytest.approx(0.05507, abs=1e-5)
    assert mann_whitney_greater([1, 1, 1], [1, 1, 1]) == (4.5, 1.0)


# --- check specs -----------------------------------------------------------------------------


def test_parse_check() -> None:
    assert parse_check("otps:median:5%") == gates.Check("otps", "median", 5.0, relative=True)
    assert parse_check("peak_mem_mb:max:50") == gates.Check("peak_mem_mb", "max", 50.0, False)
    assert parse_check("quality.rouge:mean:0.5%").relative
    assert parse_check("ttft_s:median:10%").spec == "ttft_s:median:10%"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("otps:median", "expected three parts"),
        ("tps:median:5%", "unknown metric 'tps'"),
        ("otps:p90:5%", "unknown statistic 'p90'"),
        ("otps:median:-5%", "not a non-negative number"),
        ("otps:median:five", "not a non-negative number"),
    ],
)
def test_bad_check_names_the_fix(spec: str, message: str) -> None:
    with pytest.raises(GateSpecError, match=message) as exc:
        parse_check(spec)
    assert isinstance(exc.value, devicelab.UsageError)
    assert "METRIC:STAT:THRESHOLD" in str(exc.value) or "quality.NAME" in str(exc.value)


# --- comparing the committed runs ------------------------------------------------------------


def test_unchanged_candidate_passes() -> None:
    comp = comparison("unchanged", "otps:median:5%", "ttft_s:median:5%", "peak_mem_mb:max:50")
    assert len(comp.results) == 6  # 2 keys x 3 checks
    assert {r.status for r in comp.results} == {gates.PASS}
    assert comp.exit_code == 0 and comp.warnings == []


def test_ten_percent_slower_fails_with_the_numbers() -> None:
    comp = comparison("slower10", "otps:median:5%", "ttft_s:median:5%")
    assert {r.status for r in comp.results} == {gates.FAIL}
    assert comp.exit_code == 1
    otps = next(r for r in comp.results if r.check.metric == "otps" and r.key.task == "SUMM")
    assert otps.change_pct == pytest.approx(-10.0, abs=0.01)
    assert otps.p_value == pytest.approx(1 / 924)
    assert otps.candidate == pytest.approx(otps.baseline * 0.9, rel=1e-4)
    assert "baseline" in otps.reason and "p=0.00108" in otps.reason
    ttft = next(r for r in comp.results if r.check.metric == "ttft_s")
    assert ttft.change_pct == pytest.approx(100 / 9, abs=0.01)  # times / 0.9: +11.1 %


def test_thresholds_larger_than_the_change_pass() -> None:
    comp = comparison("slower10", "otps:median:15%", "ttft_s:median:12%", "ttft_s:max:1")
    assert {r.status for r in comp.results} == {gates.PASS}
    assert all(r.p_value is not None and r.p_value < 0.01 for r in comp.results)


def test_not_significant_is_not_a_failure() -> None:
    # Worse by 10 % but alpha 0.001 < 1/924: the test cannot tell, so no failure.
    comp = comparison("slower10", "otps:median:5%", alpha=0.0009)
    assert {r.status for r in comp.results} == {gates.PASS}
    assert "not significant" in comp.results[0].reason


def test_three_repetitions_are_inconclusive() -> None:
    comp = comparison("reps3", "otps:median:5%", "ttft_s:median:5%")
    assert {r.status for r in comp.results} == {gates.INCONCLUSIVE}
    assert comp.exit_code == 3
    assert "6 baseline and 3 candidate" in comp.results[0].reason


def test_missing_key_is_inconclusive_and_fingerprint_mismatch_warns(tmp_path: Path) -> None:
    lines = (BASE / "trials.jsonl").read_text().splitlines(keepends=True)
    edited = [
        line.replace('"cores_logical":2', '"cores_logical":8')
        for line in lines
        if '"task":"QA"' not in line
    ]
    (tmp_path / "trials.jsonl").write_text("".join(edited))
    comp = gates.compare(
        devicelab.load_run(BASE),
        devicelab.load_run(tmp_path),
        [parse_check("otps:median:5%")],
        0.01,
    )
    statuses = {r.key.task: r.status for r in comp.results}
    assert statuses == {"QA": gates.INCONCLUSIVE, "SUMM": gates.PASS}
    assert any("cores_logical" in w for w in comp.warnings)
    assert comp.exit_code == 3


def test_bad_alpha() -> None:
    with pytest.raises(GateSpecError, match="alpha"):
        comparison("unchanged", "otps:median:5%", alpha=1.5)


# --- the CLI ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "code", "word"),
    [("unchanged", 0, "PASS"), ("slower10", 1, "FAIL"), ("reps3", 3, "INCONCLUSIVE")],
)
def test_cli_gate_exit_codes(
    candidate: str, code: int, word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["gate", str(BASE), str(GATES / candidate), "--fail", "otps:median:5%"]
    assert run_cli([*args, "--fail", "ttft_s:median:5%"]) == code
    out = capsys.readouterr().out
    assert word in out and "SUMM" in out and "otps:median:5%" in out


def test_cli_gate_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["gate", str(BASE), str(tmp_path), "--fail", "otps:median:5%"]) == 2
    assert "has no trials.jsonl" in capsys.readouterr().err
    assert run_cli(["gate", str(BASE), str(BASE), "--fail", "otps:mean"]) == 2
    assert "METRIC:STAT:THRESHOLD" in capsys.readouterr().err
    assert run_cli(["gate", str(BASE), str(BASE), "--fail", "otps:mean:5%", "--alpha", "0"]) == 2
    assert run_cli(["gate", str(BASE), str(BASE)]) == 2  # --fail is required


# --- the pytest plugin -----------------------------------------------------------------------


def gate_args(candidate: str, *specs: str) -> list[str]:
    args = ["--devicelab-baseline", str(BASE), "--devicelab-candidate", str(GATES / candidate)]
    for spec in specs:
        args += ["--devicelab-fail", spec]
    return args


def test_pytest_gates_pass(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-v", *gate_args("unchanged", "otps:median:5%", "ttft_s:median:5%"))
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["*gate?smollm2-135m-instruct/q4_1/SUMM/L100:otps:median:5%?*PASSED*"]
    )


def test_pytest_gates_fail_with_the_numbers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_own="def test_own():\n    assert True\n")
    result = pytester.runpytest(*gate_args("slower10", "otps:median:5%", "peak_mem_mb:max:50"))
    result.assert_outcomes(passed=3, failed=2)  # the user's own test still runs
    result.stdout.fnmatch_lines(
        [
            "*regression beyond otps:median:5%: median otps: baseline 59.69, candidate 53.72, change -10.0%, p=0.00108*"
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_pytest_gates_inconclusive_is_a_skip(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-rs", *gate_args("reps3", "otps:median:5%"))
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*inconclusive: otps has 6 baseline and 3 candidate*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (gate_args("reps3", "otps:median"), "*bad check 'otps:median'*METRIC:STAT:THRESHOLD*"),
        (gate_args("nowhere", "otps:median:5%"), "*nowhere is not a directory*"),
        (gate_args("reps3"), "*add --devicelab-fail METRIC:STAT:THRESHOLD*"),
        (["--devicelab-baseline", str(BASE)], "*add --devicelab-candidate RUN_DIR*"),
        (["--devicelab-fail", "otps:median:5%"], "*needs --devicelab-baseline*"),
        ([*gate_args("reps3", "otps:median:5%"), "--devicelab-alpha", "2"], "*alpha must be*"),
    ],
)
def test_pytest_gates_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_fixture_still_available(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fx="def test_fx(devicelab_plugin):\n    assert callable(devicelab_plugin)\n"
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_pytest_gates_take_a_per_token_field(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # The baseline with an inter-token latency p99 per trial; the candidate's 30 % slower.
    lines = (BASE / "trials.jsonl").read_text(encoding="utf-8").splitlines()
    cand = tmp_path / "stutter"
    cand.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    for out, p99 in ((base, 20.0), (cand, 26.0)):
        recs = [{**json.loads(line), "itl_p99_ms": p99 + 0.1 * i} for i, line in enumerate(lines)]
        (out / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    args = ["--devicelab-baseline", str(base), "--devicelab-candidate", str(cand)]
    result = pytester.runpytest(*args, "--devicelab-fail", "itl_p99_ms:median:10%")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*regression beyond itl_p99_ms:median:10%*"])
    # A per-token field neither run measured: a usage error naming it, not a skip.
    result = pytester.runpytest(*args, "--devicelab-fail", "itl_p50_ms:median:10%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no measured trial*has itl_p50_ms*"])
