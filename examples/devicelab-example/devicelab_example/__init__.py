"""An example devicelab plugin: the KW task (keyword extraction) and the loadavg collector.

devicelab finds this module through the entry point ``example = "devicelab_example"`` in the
``devicelab`` group (see pyproject.toml) and calls the ``@devicelab.hookimpl`` functions at
the bottom. It imports only devicelab's public names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import devicelab
from devicelab import Collector, CollectorFactory, Device, Document, Message, Task, TaskPrompt

KEYWORDS = 5

SYSTEM_PROMPT = (
    "You extract keywords from documents. Reply with exactly "
    f"{KEYWORDS} keywords or short key phrases taken from the document, separated by commas, "
    "on one line, and nothing else."
)
REQUEST = f"List {KEYWORDS} keywords of the document."

# Separators between keywords, and list decorations a model may add ("1.", "-", "*", quotes).
_SPLIT = re.compile(r"[,;\n]+")
_DECORATION = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])?\s*|[\s\"'`.]+$")


def parse_keywords(output: str) -> list[str]:
    """The keywords in a model's answer: split on commas, semicolons and new lines, list
    markers and quotes removed, empty ones dropped, at most :data:`KEYWORDS`."""
    words = []
    for part in _SPLIT.split(output):
        word = _DECORATION.sub("", part).strip().strip("\"'`")
        if word:
            words.append(word)
    return words[:KEYWORDS]


class Keywords(Task):
    """KW: ask for 5 keywords of the document the model sees."""

    kind = "KW"
    description = f"Extract {KEYWORDS} keywords from the document."

    def prompts(self, document: Document, context: str) -> list[TaskPrompt]:
        user = f"<document>\n{context}\n</document>\n\n<request>\n{REQUEST}\n</request>"
        return [
            TaskPrompt(
                item="keywords",
                messages=(Message("system", SYSTEM_PROMPT), Message("user", user)),
                fields={"system": SYSTEM_PROMPT, "document": context, "request": REQUEST},
            )
        ]

    def score(self, prompt: TaskPrompt, output: str) -> dict[str, float]:
        """``keywords_parsed``: how many keywords the answer gave (at most 5);
        ``keywords_in_document``: the fraction of the 5 asked for that occur in the document
        the model saw, ignoring case (a missing keyword counts as a miss)."""
        keywords = parse_keywords(output)
        document = prompt.fields.get("document", "").casefold()
        found = sum(1 for k in keywords if k.casefold() in document)
        return {"keywords_parsed": float(len(keywords)), "keywords_in_document": found / KEYWORDS}


class LoadAvgCollector(Collector):
    """The host's load averages over 1, 5 and 15 minutes (``None`` where the OS has none)."""

    name = "loadavg"

    def sample(self) -> dict[str, devicelab.Value]:
        try:
            one, five, fifteen = os.getloadavg()
        except (AttributeError, OSError):  # Windows has no getloadavg; some systems refuse
            return {"load_1m": None, "load_5m": None, "load_15m": None}
        return {"load_1m": one, "load_5m": five, "load_15m": fifteen}


def loadavg_for(device: Device) -> Collector | None:
    """The host's load describes the device only when the device is the host."""
    return LoadAvgCollector() if device.kind == "host" else None


@devicelab.hookimpl
def devicelab_register_tasks(register: Callable[[Task], None]) -> None:
    register(Keywords())


@devicelab.hookimpl
def devicelab_register_collectors(register: Callable[[str, CollectorFactory], None]) -> None:
    register("loadavg", loadavg_for)
