"""Apps on the phone, driven through their UI with uiautomator2.

An app profile (TOML, see apps/*.toml) lists declarative UI steps: ``[[load]]`` runs once
per model load (start the app, pick the model, wait until it is ready) and ``[[trial]]`` runs
for every trial (type the prompt, send, watch the answer grow, read the app's own stats).

Timing comes from watching the UI: the request is sent when the send step's click returns,
the first token when the response first shows text, and each later change of the text adds
tokens, counted with the model's own tokenizer on the host. The app's reported speeds (for
example MLC's ``prefill: X tok/s, decode: Y tok/s``) are kept as ``engine_timings``. Text is
entered with ``set_text``: ``send_keys`` may install an input-method app on the user's phone.
"""

from __future__ import annotations

import http.client
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import devicelab
from devicelab import (
    DeviceLostError,
    Engine,
    EngineError,
    GenerationRequest,
    GenerationResult,
    ModelSpec,
    ScenarioError,
    TokenStream,
    TrialError,
)

from .adb import adbutils_module
from .device import AndroidDevice
from .llamacli import HostTokens, host_tokenizer

APPS = Path(__file__).parent / "apps"
SELECTOR_KEYS = {
    "text", "textContains", "textMatches", "textStartsWith", "className", "classNameMatches",
    "description", "descriptionContains", "descriptionMatches", "descriptionStartsWith",
    "resourceId", "resourceIdMatches", "packageName", "index", "instance", "enabled",
    "clickable", "focused", "selected", "checked",
}  # fmt: skip
ACTIONS: dict[str, tuple[set[str], set[str]]] = {
    # action: (required keys, optional keys) besides "action", "optional" and "timeout_s"
    "start": (set(), set()),
    "stop": (set(), set()),
    "click": ({"selector"}, set()),
    "set_text": ({"selector", "text"}, set()),
    "wait": ({"selector"}, set()),
    "wait_gone": ({"selector"}, set()),
    "read": ({"selector", "pattern"}, set()),
    "press": ({"key"}, set()),
    "sleep": ({"seconds"}, set()),
    "send": ({"selector"}, set()),
    "watch": ({"response", "until"}, {"exclude"}),
}


@dataclass(frozen=True)
class Step:
    action: str
    args: Mapping[str, Any]
    optional: bool = False
    timeout_s: float = 10.0


@dataclass(frozen=True)
class AppProfile:
    name: str
    package: str
    activity: str
    load: tuple[Step, ...]
    trial: tuple[Step, ...]
    source: Path = field(default=Path())


def load_profile(ref: str) -> AppProfile:
    """An app profile by built-in name (apps/NAME.toml) or by path; errors name the step."""
    path = APPS / f"{ref}.toml" if "/" not in ref and not ref.endswith(".toml") else Path(ref)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in APPS.glob("*.toml")))
        raise ScenarioError(
            f"app profile {ref!r} not found. Built-in apps: {known}; or give a path to a "
            "profile TOML."
        )
    try:
        data = devicelab.read_toml(path)
    except devicelab.TOMLDecodeError as exc:
        raise ScenarioError(f"app profile {path}: not valid TOML: {exc}") from None
    app = data.get("app", {})
    for key in ("name", "package"):
        if not isinstance(app.get(key), str):
            raise ScenarioError(f"app profile {path}: [app] {key} is missing (a string).")
    unknown_tables = set(data) - {"app", "load", "trial"}
    if unknown_tables:
        raise ScenarioError(
            f"app profile {path}: unknown table(s) {', '.join(sorted(unknown_tables))}; "
            "known: [app], [[load]], [[trial]]."
        )
    steps = {
        t: tuple(_step(path, t, i, s) for i, s in enumerate(data.get(t, [])))
        for t in ("load", "trial")
    }
    if not any(s.action == "watch" for s in steps["trial"]):
        raise ScenarioError(f"app profile {path}: [[trial]] needs a 'watch' step for the answer.")
    return AppProfile(
        app["name"], app["package"], app.get("activity", ""), steps["load"], steps["trial"], path
    )


def _step(path: Path, table: str, i: int, raw: Any) -> Step:
    where = f"app profile {path}: [[{table}]] step {i + 1}"
    if not isinstance(raw, dict) or raw.get("action") not in ACTIONS:
        raise ScenarioError(
            f"{where}: 'action' must be one of {', '.join(sorted(ACTIONS))}, "
            f"not {raw.get('action') if isinstance(raw, dict) else raw!r}."
        )
    required, optional = ACTIONS[raw["action"]]
    args = {k: v for k, v in raw.items() if k not in ("action", "optional", "timeout_s")}
    missing = required - set(args)
    extra = set(args) - required - optional
    if missing or extra:
        raise ScenarioError(
            f"{where} ({raw['action']}): "
            + (f"missing {', '.join(sorted(missing))}. " if missing else "")
            + (f"unknown key(s) {', '.join(sorted(extra))}." if extra else "")
        )
    for key in ("selector", "until") + (
        ("response",) if isinstance(args.get("response"), dict) else ()
    ):
        if key in args:
            bad = set(args[key]) - SELECTOR_KEYS
            if bad:
                raise ScenarioError(
                    f"{where}: unknown selector key(s) {', '.join(sorted(bad))}; "
                    f"known: {', '.join(sorted(SELECTOR_KEYS))}."
                )
    if raw["action"] == "watch" and not (
        isinstance(args["response"], dict) or args["response"] == "new_text"
    ):
        raise ScenarioError(f'{where}: response must be a selector table or "new_text".')
    for sel in args.get("exclude", []):
        bad = set(sel) - SELECTOR_KEYS if isinstance(sel, dict) else {"(not a table)"}
        if bad:
            raise ScenarioError(f"{where}: exclude: unknown selector key(s) {', '.join(bad)}.")
    return Step(
        raw["action"], args, bool(raw.get("optional", False)), float(raw.get("timeout_s", 10))
    )


# --- matching nodes of a window hierarchy dump --------------------------------------------

_ATTR = {
    "text": "text", "className": "class", "description": "content-desc",
    "resourceId": "resource-id", "packageName": "package",
}  # fmt: skip


def _contains(have: str, want: str) -> bool:
    return want in have


def _fullmatch(have: str, want: str) -> bool:
    return re.fullmatch(want, have) is not None


# The keys that compare a node attribute other than by equality: the attribute and the test.
_TESTS: dict[str, tuple[str, Callable[[str, str], bool]]] = {
    "textContains": ("text", _contains),
    "textStartsWith": ("text", str.startswith),
    "descriptionContains": ("content-desc", _contains),
    "descriptionStartsWith": ("content-desc", str.startswith),
    "textMatches": ("text", _fullmatch),
    "classNameMatches": ("class", _fullmatch),
    "descriptionMatches": ("content-desc", _fullmatch),
    "resourceIdMatches": ("resource-id", _fullmatch),
}
_FLAGS = ("enabled", "clickable", "focused", "selected", "checked")


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def matches(node: ET.Element, selector: Mapping[str, Any]) -> bool:
    """Whether a hierarchy node matches a uiautomator2-style selector."""
    a = node.attrib
    for key, want in selector.items():
        if key in _ATTR:
            if a.get(_ATTR[key], "") != want:
                return False
        elif key in _TESTS:
            attr, test = _TESTS[key]
            if not test(a.get(attr, ""), want):
                return False
        elif key in _FLAGS and (a.get(key) == "true") != bool(want):
            return False
    return True


def find(root: ET.Element, selector: Mapping[str, Any]) -> list[ET.Element]:
    return [n for n in root.iter("node") if matches(n, selector)]


def response_text(
    root: ET.Element, step: Step, prompt: str, package: str, baseline: set[str]
) -> str:
    """The answer as the screen shows it now."""
    response = step.args["response"]
    if isinstance(response, dict):
        nodes = find(root, response)
        return nodes[-1].attrib.get("text", "") if nodes else ""
    # "new_text": chat apps without ids. The answer is the last text on the app's screen
    # that was not there before the send and is not the prompt. Matching the prompt's own
    # bubble would not do: a list recycles the bubbles that scrolled away.
    excluded = {id(n) for sel in step.args.get("exclude", []) for n in find(root, sel)}
    texts = [
        n.attrib.get("text", "")
        for n in root.iter("node")
        if n.attrib.get("package") == package and id(n) not in excluded
    ]
    new = [t for t in texts if t and t not in baseline and t != prompt]
    return new[-1] if new else ""


def screen_texts(root: ET.Element, package: str) -> set[str]:
    return {
        n.attrib.get("text", "") for n in root.iter("node") if n.attrib.get("package") == package
    }


def _u2_selector(selector: Mapping[str, Any]) -> dict[str, Any]:
    return dict(selector)


def parse_dumpsys_package(text: str, package: str) -> dict[str, str]:
    """``versionName``, ``versionCode`` (and minSdk, targetSdk) of ``package`` from
    ``dumpsys package PACKAGE``: the first ``Package [PACKAGE]`` block under ``Packages:``
    (an updated system app has a second, older one under ``Hidden system packages:``)."""
    out: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Package ["):
            if inside:
                break  # the next package's block
            inside = stripped.startswith(f"Package [{package}]")
            continue
        if not inside:
            continue
        if stripped and not line.startswith("    "):
            break  # a new section
        for key, value in re.findall(r"\b(versionCode|minSdk|targetSdk|versionName)=(\S+)", line):
            out.setdefault(key, value)
    return out


# What a uiautomator2 call raises when its server on the phone went away (a reboot, a
# disconnect, the server killed): urllib3's and requests' connection errors, by name, since
# neither library is imported here.
_GONE = {
    "RemoteDisconnected", "ConnectionError", "ProtocolError", "MaxRetryError",
    "NewConnectionError", "AdbError", "AdbConnectionError", "ConnectionResetError",
    "ConnectionRefusedError", "BrokenPipeError", "ReadTimeoutError",
}  # fmt: skip


def server_gone(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the UI server or the link to the
    phone went away, rather than that the app or the profile did something wrong."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (ConnectionError, http.client.HTTPException, EOFError)):
            return True
        if type(cur).__name__ in _GONE:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


class AppEngine(HostTokens, Engine):
    """A model inside an app, measured through the app's UI."""

    name = "app"
    device_kinds = ("android",)

    @dataclass(frozen=True)
    class Options:
        app: str = "mlcchat"
        tokenizer: str = "smollm2-135m-instruct"
        poll_s: float = 0.02

        def __post_init__(self) -> None:
            load_profile(self.app)  # bad profiles are bad input, reported before the run

    def __init__(self, device: devicelab.Device, model: ModelSpec, options: Any) -> None:
        super().__init__(device, model, options)
        self.profile = load_profile(options.app)
        self._u2: Any = None
        # Set by a device fault: the next trial connects to the UI server anew first.
        self._stale = False

    @classmethod
    def check_model(cls, model: ModelSpec) -> None:
        adbutils_module()
        try:
            import uiautomator2  # noqa: F401
        except ImportError:
            raise devicelab.MissingDependencyError(
                "app scenarios need uiautomator2. Install it: pip install 'devicelab[android]'"
            ) from None

    @property
    def phone(self) -> AndroidDevice:
        assert isinstance(self.device, AndroidDevice)
        return self.device

    def load(self) -> None:
        registry = self.phone.registry
        if self.options.tokenizer not in registry.models:
            raise ScenarioError(
                f"app engine: tokenizer model {self.options.tokenizer!r} is not registered; "
                "set [models.options] tokenizer to a registered GGUF model with the app "
                "model's tokenizer."
            )
        self._tok = host_tokenizer(registry, registry.models[self.options.tokenizer][1])
        self._connect()
        self._run_steps(self.profile.load, {})
        # Watched from now on, so the first trial's CPU counters start with the app's.
        self._watch_app()

    def _connect(self) -> None:
        import uiautomator2 as u2

        # The device object of our own adb client, not the serial: given a serial,
        # uiautomator2 asks adbutils' default server (port 5037), not the one this phone is on.
        self._u2 = u2.connect_usb(self.phone.require_adb().device)
        self._stale = False

    def _watch_app(self) -> None:
        # The app's engine is its package: every process of its UID (apps may run a model
        # in a second process), so none of its work counts as other load.
        self.phone.watch(self.phone.app_pids(self.profile.package), self.profile.package)

    def _fault(self, reason: str) -> DeviceLostError:
        """A device fault (the app or its UI server gone): the trial is retried, after the
        UI server is connected anew and the app started again."""
        self._stale = True
        return DeviceLostError(reason)

    def context_window(self) -> int:
        return 4096

    def _hierarchy(self) -> ET.Element:
        return ET.fromstring(self._u2.dump_hierarchy(compressed=False))

    def _run_steps(
        self,
        steps: Sequence[Step],
        values: Mapping[str, str],
        request: GenerationRequest | None = None,
        stream: TokenStream | None = None,
    ) -> tuple[str, dict[str, float]]:
        d = self._u2
        answer = ""
        timings: dict[str, float] = {}
        baseline: set[str] = set()
        for step in steps:
            try:
                a = step.args
                sel = _u2_selector(a.get("selector", {}))
                if step.action == "start":
                    d.app_start(self.profile.package, self.profile.activity or None)
                elif step.action == "stop":
                    d.app_stop(self.profile.package)
                elif step.action in ("click", "send"):
                    if step.action == "send":
                        baseline = screen_texts(self._hierarchy(), self.profile.package)
                    d(**sel).click(timeout=step.timeout_s)
                    if step.action == "send" and stream is not None:
                        stream.sent()
                elif step.action == "set_text":
                    d(**sel).set_text(str(a["text"]).format_map(values))
                elif step.action == "wait":
                    if not d(**sel).wait(timeout=step.timeout_s):
                        raise EngineError(f"{sel} did not appear within {step.timeout_s:g} s")
                elif step.action == "wait_gone":
                    if not d(**sel).wait_gone(timeout=step.timeout_s):
                        raise EngineError(f"{sel} did not go away within {step.timeout_s:g} s")
                elif step.action == "read":
                    text = d(**sel).get_text(timeout=step.timeout_s) or ""
                    m = re.search(str(a["pattern"]), text)
                    if m is None:
                        raise EngineError(f"{text!r} does not match {a['pattern']!r}")
                    timings.update({k: float(v) for k, v in m.groupdict().items() if v})
                elif step.action == "press":
                    d.press(str(a["key"]))
                elif step.action == "sleep":
                    time.sleep(float(a["seconds"]))
                elif step.action == "watch":
                    assert stream is not None and request is not None
                    answer = self._watch(step, values.get("prompt", ""), stream, baseline)
            except (DeviceLostError, devicelab.TrialTimeout, devicelab.UsageError):
                raise
            except Exception as exc:
                what = f"UI step {step.action} {step.args}: {type(exc).__name__}: {exc}"
                if server_gone(exc):
                    raise self._fault(f"the UI server went away: {what}") from exc
                if step.optional and not isinstance(exc, TrialError):
                    continue
                if not self._app_alive():
                    raise self._fault(f"app killed: the app's process went away ({what})") from exc
                if isinstance(exc, TrialError):
                    raise
                raise EngineError(what) from exc
        return answer, timings

    def _app_alive(self) -> bool:
        return bool(self.phone.pids(self.profile.package))

    def _watch(self, step: Step, prompt: str, stream: TokenStream, baseline: set[str]) -> str:
        """Poll the screen until ``until`` holds: text growth gives the token times."""
        if stream.t_sent is None:
            stream.sent()
        # A poll sees what appeared since the last one: the gaps between tokens are the
        # polling interval's, so the record says tokens_batched and leaves the ITLs null.
        stream.batched = True
        deadline = time.monotonic() + step.timeout_s
        shown, counted = "", 0
        while True:
            stream.check_deadline()
            root = self._hierarchy()
            if not any(n.attrib.get("package") == self.profile.package for n in root.iter("node")):
                raise self._fault("app killed: the app left the screen mid-trial")
            text = response_text(root, step, prompt, self.profile.package, baseline)
            if text != shown:
                n = len(self.tokenize(text))
                if n > counted:
                    stream.token(
                        n - counted, text=text[len(shown) :] if text.startswith(shown) else text
                    )
                    counted = n
                shown = text
            if shown and find(root, step.args["until"]):
                return shown
            if time.monotonic() > deadline:
                raise devicelab.TrialTimeout(
                    f"the app did not finish answering within {step.timeout_s:g} s"
                )
            time.sleep(self.options.poll_s)

    def generate(self, request: GenerationRequest, stream: TokenStream) -> GenerationResult:
        if self._stale:
            try:
                self._connect()  # after a fault the server may be gone (a reboot) or stale
            except Exception as exc:
                if not server_gone(exc):
                    raise
                raise self._fault(f"the UI server cannot be reached: {exc}") from exc
        if not self._app_alive():
            self._run_steps(self.profile.load, {})  # the app was killed: start it again
        self._watch_app()
        user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        values = {"prompt": user, "max_tokens": str(request.max_tokens)}
        # Task parts (document, request, system) where the prompt came from a task.
        values.update(request.fields)
        answer, timings = self._run_steps(self.profile.trial, values, request, stream)
        return GenerationResult(
            text=answer,
            # The app applies its own template; this is the prompt as this model sees it.
            input_tokens=self.prompt_tokens(request.messages),
            output_tokens=stream.count,
            engine_timings=timings,
            # prefilled_tokens stays None: the apps show rates, not how many prompt tokens
            # they evaluated, so a cached prefix cannot be proven or ruled out from the UI.
            engine_prefill_tps=_positive(timings.get("prefill_tok_s")),
            engine_decode_tps=_positive(timings.get("decode_tok_s")),
        )

    def build_info(self) -> dict[str, str]:
        """The app as the phone reports it (``dumpsys package``): its package, versionName
        and versionCode."""
        text = self.phone.require_adb().check(["dumpsys", "package", self.profile.package])
        return {"app": self.profile.name, "package": self.profile.package} | (
            parse_dumpsys_package(text, self.profile.package)
        )

    def close(self) -> None:
        self.close_tokens()
