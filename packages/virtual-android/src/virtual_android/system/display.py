"""The display: the display manager (`dumpsys display`), SurfaceFlinger (`dumpsys
SurfaceFlinger`), the picture on the panel (`screencap`, `screenrecord`, the `framebuffer:`
service) and the window hierarchy `uiautomator dump` reads.

The screen itself (windows, views, the picture) lives in ``apps`` (``DeviceScreen``); this
service only holds a `ScreenSource` for it, so the tools reach the screen without importing
the apps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..display import Frame, ScreenSource, black_frame
from ..fs.filesystem import FsError
from .screenrecord import screenrecord_command
from .service import SystemService

if TYPE_CHECKING:
    from ..shell.interpreter import CommandContext, CommandHandler
    from .power import PowerService
    from .properties import PropertyService
    from .window import WindowService

__all__ = ["DISPLAY_ID", "UIAUTOMATOR_DUMP_FILE", "DisplayService", "SurfaceFlingerService"]

DISPLAY_ID = "4630946838214536449"  # the built-in panel's physical display id

_SCREENCAP_USAGE = """usage: screencap [-hp] [-d display-id] [FILENAME]
   -h: this message
   -p: save the file as a png.
   -d: specify the physical display ID to capture (default: 4630946838214536449)
       see "dumpsys SurfaceFlinger --display-id" for valid display IDs.
If FILENAME ends with .png it will be saved as a png.
If FILENAME is not given, the results will be printed to stdout.
"""

_UIAUTOMATOR_USAGE = """Usage: uiautomator <subcommand> [options]

Available subcommands:

help: displays help message

runtest: executes UI automation tests
    runtest <class spec> [options]
    <class spec>: <JARS> < -c <CLASSES> | -e class <CLASSES> >
      <JARS>: a list of jar files containing test classes and dependencies. If
        the path is relative, it's assumed to be under /data/local/tmp. Use
        absolute path if the file is elsewhere. Multiple files can be
        specified, separated by space.
      <CLASSES>: a list of test class names to run, separated by comma. To
        a single method, use TestClass#testMethod format. The -e or -c option
        may be repeated. This option is not required and if not provided then
        all the tests in provided jars will be run automatically.
    options:
      --nohup: trap SIG_HUP, so test won't terminate even if parent process
               is terminated, e.g. USB is disconnected.
      -e debug [true|false]: wait for debugger to connect before starting.
      -e runner [CLASS]: use specified test runner class instead. If
        unspecified, framework default runner will be used.
      -e <NAME> <VALUE>: other name-value pairs to be passed to test classes.
        May be repeated.
      -e outputFormat simple | -s: enabled less verbose JUnit style output.

dump: creates an XML dump of current UI hierarchy
    dump [--verbose][file]
      [--compressed]: dumps compressed layout information.
      [file]: the location where the dumped XML should be stored, default is
      /sdcard/window_dump.xml

events: prints out accessibility events until terminated
"""
UIAUTOMATOR_DUMP_FILE = "/sdcard/window_dump.xml"


class DisplayService(SystemService):
    name = "display"

    def __init__(
        self, window: WindowService, power: PowerService, properties: PropertyService
    ) -> None:
        self.window = window
        self._power = power
        self.properties = properties
        # What screencap, `uiautomator dump` and the framebuffer service show; the apps'
        # DeviceScreen puts itself here when it is created (apps.u2server.screen_of).
        self.screen_source: ScreenSource | None = None

    @property
    def screen_on(self) -> bool:
        return self._power.screen_on

    def capture_screen(self) -> Frame:
        """The picture on the display now: what screencap and the framebuffer service send."""
        source = self.screen_source
        if source is None or not self._power.screen_on:
            return black_frame(*self.window.display_size())
        return source.frame()

    def commands(self) -> dict[str, CommandHandler]:
        return {
            "screencap": self.screencap,
            "screenrecord": screenrecord_command(self),
            "uiautomator": self.uiautomator,
        }

    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        # The rotated size is what apps and the viewport see; DisplayDeviceInfo is the panel,
        # which never rotates.
        panel_w, panel_h = self.window.panel_size()
        width, height = self.window.display_size()
        rotation = self.window.rotation()
        density = self.window.density()
        state = "ON" if self._power.screen_on else "OFF"
        unique = f"local:{DISPLAY_ID}"
        ctx.write(
            "DISPLAY MANAGER (dumpsys display)\n"
            "  mOnlyCode=false\n"
            "  mSafeMode=false\n"
            "  mPendingTraversal=false\n"
            f"  mGlobalDisplayState={state}\n"
            "  mViewports=[DisplayViewport{type=INTERNAL, valid=true, isActive=true, displayId=0, "
            f"uniqueId='{unique}', physicalPort=129, orientation={rotation}, "
            f"logicalFrame=Rect(0, 0 - {width}, {height}), "
            f"physicalFrame=Rect(0, 0 - {width}, {height}), "
            f"deviceWidth={width}, deviceHeight={height}}}]\n"
            "\nDisplay Devices: size=1\n"
            f'  DisplayDeviceInfo{{"Built-in Screen": uniqueId="{unique}", '
            f"{panel_w} x {panel_h}, modeId 1, renderFrameRate 120.0, defaultModeId 1, "
            f"density {density}, {density}.0 x {density}.0 dpi, appVsyncOff 1000000, "
            "presDeadline 8333333, touch INTERNAL, "
            f"rotation 0, type INTERNAL, state {state}, committedState {state}}}\n"
            "\nLogical Displays: size=1\n"
            "  Display 0:\n"
            "    mDisplayId=0\n"
            "    mLayerStack=0\n"
            f'    mBaseDisplayInfo=DisplayInfo{{"Built-in Screen", displayId 0, real {panel_w} x '
            f"{panel_h}, largest app {panel_w} x {panel_h}, rotation 0, density {density}, "
            f'type INTERNAL, state {state}, uniqueId "{unique}"}}\n'
            f'    mOverrideDisplayInfo=DisplayInfo{{"Built-in Screen", displayId 0, real {width} x '
            f"{height}, largest app {width} x {height}, rotation {rotation}, density {density}, "
            f'type INTERNAL, state {state}, uniqueId "{unique}"}}\n'
        )
        return 0

    def screencap(self, ctx: CommandContext) -> int:
        args = ctx.argv[1:]
        png = False
        target = ""
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "-p":
                png = True
            elif arg == "-d" and i + 1 < len(args):
                i += 1
            elif arg.startswith("-"):
                ctx.error(_SCREENCAP_USAGE)
                return 1 if arg != "-h" else 0
            else:
                target = arg
            i += 1
        frame = self.capture_screen()
        data = frame.png() if png or target.endswith(".png") else frame.raw()
        if not target:
            ctx.write(data)
            return 0
        try:
            ctx.fs.write(target, data, ctx.cwd)
        except FsError:
            ctx.error(f"Error opening file: {target} (Permission denied)\n")
            return 1
        return 0

    def uiautomator(self, ctx: CommandContext) -> int:
        args = ctx.argv[1:]
        if args[:1] != ["dump"]:
            ctx.write(_UIAUTOMATOR_USAGE)
            return 0 if args[:1] in ([], ["help"]) else 1
        compressed = "--compressed" in args
        files = [a for a in args[1:] if not a.startswith("--")]
        target = files[0] if files else UIAUTOMATOR_DUMP_FILE
        source = self.screen_source
        if source is None:
            # What a phone prints when no window can be read (nothing is on the screen).
            ctx.error("ERROR: null root node returned by UiTestAutomationBridge.\n")
            return 0
        xml = source.hierarchy_xml(compressed)
        path = ctx.fs.normpath(target, ctx.cwd)
        if path in ("/dev/tty", "/dev/stdout", "/proc/self/fd/1"):
            # `adb exec-out uiautomator dump /dev/tty`: the XML on the output, then the message.
            ctx.write(xml)
            ctx.write(f"UI hierchary dumped to: {path}\n")
            return 0
        try:
            ctx.fs.write(path, xml.encode(), ctx.cwd)
        except FsError as exc:
            ctx.error(f"java.io.FileNotFoundException: {path}: open failed: {exc}\n")
            return 1
        # Sic: Android's DumpCommand spells it so, and scripts grep for it.
        ctx.write(f"UI hierchary dumped to: {path}\n")
        return 0


class SurfaceFlingerService(SystemService):
    name = "SurfaceFlinger"

    def __init__(self, window: WindowService) -> None:
        self._window = window

    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        # adbutils' screenshot(display_id=N) reads the ids from `--display-id`.
        width, height = self._window.display_size()
        if "--display-id" in args:
            ctx.write(
                f"Display {DISPLAY_ID} (HWC display 0): port=129 pnpId=SDC "
                'displayName="Built-in Screen"\n'
            )
            return 0
        ctx.write(
            "Display identification data:\n"
            f"Display {DISPLAY_ID} (HWC display 0): port=129 pnpId=SDC "
            'displayName="Built-in Screen"\n\n'
            f"Display {DISPLAY_ID} (active) HWC layer metadata\n"
            f"  resolution={width}x{height} refresh-rate=120.00Hz\n"
        )
        return 0
