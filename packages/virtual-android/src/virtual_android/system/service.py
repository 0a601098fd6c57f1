"""The phone's service manager: the system services by name, as `dumpsys NAME` finds them.

Each system service (system/*.py) owns its state, the shell tools that reach it (`wm`, `input`,
`settings`, ...) and its `dump()`. The device builds them and adds them here; `dumpsys` looks a
service up by the name Android registers it under, as servicemanager does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..shell.interpreter import CommandContext, CommandHandler

__all__ = ["ServiceManager", "SystemService"]


class SystemService:
    """One system service. ``name`` is what `dumpsys` and `cmd` know it by ("" for one that
    has no binder name, such as init's property service)."""

    name = ""
    # The shell tool `cmd NAME ARGS...` hands over to (`wm` for the window manager), as a
    # service's onShellCommand answers `cmd` on a phone; "" for a service without one.
    tool = ""

    def commands(self) -> dict[str, CommandHandler]:
        """The shell tools this service answers (`wm` for the window manager)."""
        return {}

    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        """`dumpsys NAME ARGS...`: write the service's state to ``ctx``."""
        return 0


class ServiceManager:
    """The registered services, in registration order (which `dumpsys -l` lists)."""

    def __init__(self) -> None:
        self._services: dict[str, SystemService] = {}
        self._unnamed: list[SystemService] = []

    def add(self, service: SystemService, *names: str) -> None:
        """Register ``service`` under its name (and any further ``names``, as Android
        registers the activity manager's `meminfo` and `cpuinfo`)."""
        for name in (service.name, *names) if service.name else names:
            if name in self._services:
                raise ValueError(f"a service {name!r} is already registered")
            self._services[name] = service
        if not service.name and not names:
            self._unnamed.append(service)

    def get(self, name: str) -> SystemService | None:
        return self._services.get(name)

    def names(self) -> list[str]:
        return list(self._services)

    def __iter__(self) -> Iterator[SystemService]:
        seen: list[SystemService] = []
        for service in [*self._services.values(), *self._unnamed]:
            if not any(s is service for s in seen):
                seen.append(service)
                yield service

    def commands(self) -> dict[str, CommandHandler]:
        """Every service's shell tools, and `dumpsys` itself."""
        table: dict[str, CommandHandler] = {"dumpsys": self.dumpsys}
        for service in self:
            table.update(service.commands())
        return table

    def dumpsys(self, ctx: CommandContext) -> int:
        args = ctx.argv[1:]
        if not args or args[0] == "-l":
            ctx.write("Currently running services:\n")
            for name in self._services:
                ctx.write(f"  {name}\n")
            return 0
        service = self._services.get(args[0])
        if service is None:
            ctx.error(f"Can't find service: {args[0]}\n")
            return 0
        return service.dump(ctx, args[1:])
