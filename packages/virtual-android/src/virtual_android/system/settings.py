"""The settings provider: the system, secure and global tables and the `settings` tool."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .service import SystemService

if TYPE_CHECKING:
    from ..shell.interpreter import CommandContext, CommandHandler

__all__ = ["SETTINGS", "SettingsService"]

SETTINGS: dict[str, dict[str, str]] = {
    "system": {
        "screen_brightness": "128",
        "screen_brightness_mode": "0",
        "screen_off_timeout": "60000",
        "accelerometer_rotation": "1",
        "user_rotation": "0",
        "pointer_location": "0",
        "show_touches": "0",
        "font_scale": "1.0",
    },
    "secure": {
        "default_input_method": "com.samsung.android.honeyboard/.service.HoneyBoardService",
        "enabled_input_methods": "com.samsung.android.honeyboard/.service.HoneyBoardService",
        "android_id": "6f3c2a91d04b7e15",
        "location_mode": "3",
    },
    "global": {
        "adb_enabled": "1",
        "adb_wifi_enabled": "1",
        "airplane_mode_on": "0",
        "stay_on_while_plugged_in": "0",
        "window_animation_scale": "1.0",
        "transition_animation_scale": "1.0",
        "animator_duration_scale": "1.0",
        "development_settings_enabled": "1",
        "wifi_on": "1",
    },
}


class SettingsService(SystemService):
    """The three tables; they live in /data, so a reboot keeps them."""

    name = "settings"
    tool = "settings"

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, str]] = {k: dict(v) for k, v in SETTINGS.items()}

    def commands(self) -> dict[str, CommandHandler]:
        return {"settings": self.settings}

    def settings(self, ctx: CommandContext) -> int:
        args = [a for a in ctx.argv[1:] if a not in ("--user", "current", "--lineage")]
        if len(args) < 2:
            ctx.error("invalid command\n")
            return 255
        verb, namespace = args[0], args[1]
        store = self.tables.get(namespace)
        if store is None:
            ctx.error(f"Invalid namespace '{namespace}'\n")
            return 255
        if verb == "get" and len(args) >= 3:
            ctx.write(store.get(args[2], "null") + "\n")
            return 0
        if verb == "put" and len(args) >= 4:
            store[args[2]] = args[3]
            return 0
        if verb == "delete" and len(args) >= 3:
            removed = store.pop(args[2], None)
            ctx.write(f"Deleted {1 if removed is not None else 0} rows\n")
            return 0
        if verb == "list":
            for key in sorted(store):
                ctx.write(f"{key}={store[key]}\n")
            return 0
        ctx.error("invalid command\n")
        return 255
