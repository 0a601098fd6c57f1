"""System tools of the S24's shell: `cmd`, `ip`, `ifconfig`, `nc`, `svc`, `df`, `top`, `ime`
and `reboot`.

The network is described, never used: the phone reports the Wi-Fi address a phone on a home
network has (or none with Wi-Fi off or in airplane mode). The one way out is the one a phone on
USB has: `nc 127.0.0.1 PORT` to a port `adb reverse` maps, which the adb server connects to the
host's socket.
"""

from __future__ import annotations

import threading

from ..shell.interpreter import CommandContext, CommandHandler

__all__ = ["system_tools"]

WLAN_MAC = "5e:a1:3c:7f:20:9b"
WLAN_IP = "192.168.1.57"
WLAN_IP6 = "fe80::5ca1:3cff:fe7f:209b"
_CPUS = 10  # Exynos 2400: 1 + 2 + 3 + 4 cores
_IME_ID = "com.samsung.android.honeyboard/.service.HoneyBoardService"


def _wifi_up(ctx: CommandContext) -> bool:
    settings = ctx.device.settings["global"]
    return settings.get("wifi_on", "1") == "1" and settings.get("airplane_mode_on", "0") != "1"


def _run(ctx: CommandContext, argv: list[str]) -> int:
    """Run another of the phone's commands in this process (as `cmd` hands over to services)."""
    handler = ctx.device.commands_snapshot().get(argv[0])
    if handler is None:
        ctx.error(f"cmd: Can't find service: {argv[0]}\n")
        return 20
    sub = CommandContext(
        argv,
        ctx.env,
        ctx.cwd,
        ctx.stdin,
        ctx.stdout,
        ctx.stderr,
        ctx.cancelled,
        ctx.device,
        ctx.shell,
    )
    return int(handler(sub))


# `cmd SERVICE ...` for the services this phone has no system service object for: the tool
# that answers for them. The rest name their tool themselves (SystemService.tool).
_CMD_TOOLS = {
    "input_method": "ime",
    "wifi": "svc",
    "battery": "dumpsys",
}


def _cmd_tools(ctx: CommandContext) -> dict[str, str]:
    tools = {s.name: s.tool for s in ctx.device.services if s.name and s.tool}
    return {**tools, **_CMD_TOOLS}


def cmd_cmd(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        ctx.write(
            "cmd: No service specified; use -l to list all running services. Use -w to "
            "start and wait for a service.\n"
        )
        return 20
    if args[0] == "-l":
        ctx.write("Currently running services:\n")
        for name in sorted(_cmd_tools(ctx)):
            ctx.write(f"  {name}\n")
        return 0
    service, rest = args[0], args[1:]
    tool = _cmd_tools(ctx).get(service)
    if tool is None:
        ctx.error(f"cmd: Can't find service: {service}\n")
        return 20
    if service == "wifi":
        verb = {"set-wifi-enabled": "enable" if rest[1:2] == ["enabled"] else "disable"}
        if rest[:1] == ["set-wifi-enabled"]:
            return _run(ctx, ["svc", "wifi", verb["set-wifi-enabled"]])
        if rest[:1] == ["status"]:
            ctx.write("Wifi is enabled\n" if _wifi_up(ctx) else "Wifi is disabled\n")
            return 0
        ctx.error(f"Unknown command: {' '.join(rest)}\n")
        return 255
    if service == "battery":
        return _run(ctx, ["dumpsys", "battery", *rest])
    return _run(ctx, [tool, *rest])


# -- network ------------------------------------------------------------------------------------
def cmd_ifconfig(ctx: CommandContext) -> int:
    """toybox ifconfig: lo and wlan0 (wlan0 without an address while Wi-Fi is off)."""
    names = [a for a in ctx.argv[1:] if not a.startswith("-")]
    wanted = names[:1] or ["lo", "wlan0"]
    blocks: list[str] = []
    for name in wanted:
        if name == "lo":
            blocks.append(
                "lo        Link encap:Local Loopback  \n"
                "          inet addr:127.0.0.1  Mask:255.0.0.0 \n"
                "          inet6 addr: ::1/128 Scope: Host\n"
                "          UP LOOPBACK RUNNING  MTU:65536  Metric:1\n"
                "          RX packets:41822 errors:0 dropped:0 overruns:0 frame:0 \n"
                "          TX packets:41822 errors:0 dropped:0 overruns:0 carrier:0 \n"
                "          collisions:0 txqueuelen:1000 \n"
                "          RX bytes:9134771 TX bytes:9134771 \n"
            )
        elif name == "wlan0":
            up = _wifi_up(ctx)
            addr = (
                f"          inet addr:{WLAN_IP}  Bcast:192.168.1.255  Mask:255.255.255.0 \n"
                f"          inet6 addr: {WLAN_IP6}/64 Scope: Link\n"
                if up
                else ""
            )
            flags = "UP BROADCAST RUNNING MULTICAST" if up else "BROADCAST MULTICAST"
            blocks.append(
                f"wlan0     Link encap:Ethernet  HWaddr {WLAN_MAC}\n{addr}"
                f"          {flags}  MTU:1500  Metric:1\n"
                "          RX packets:184203 errors:0 dropped:0 overruns:0 frame:0 \n"
                "          TX packets:96412 errors:0 dropped:0 overruns:0 carrier:0 \n"
                "          collisions:0 txqueuelen:3000 \n"
                "          RX bytes:212345678 TX bytes:12345678 \n"
            )
        else:
            ctx.error(f"ifconfig: {name}: No such device\n")
            return 1
    ctx.write("\n".join(blocks) + "\n")
    return 0


def cmd_ip(ctx: CommandContext) -> int:
    """`ip addr [show [dev] IFACE]`, `ip link`, `ip route`."""
    args = ctx.argv[1:]
    while args and args[0].startswith("-"):
        args = args[1:]
    obj = args[0] if args else ""
    rest = [a for a in args[1:] if a not in ("show", "list", "dev")]
    up = _wifi_up(ctx)
    if obj in ("a", "addr", "address", "l", "link"):
        link_only = obj in ("l", "link")
        ifaces = rest[:1] or ["lo", "wlan0"]
        out: list[str] = []
        for name in ifaces:
            if name == "lo":
                out.append(
                    "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group "
                    "default qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00"
                )
                if not link_only:
                    out.append(
                        "    inet 127.0.0.1/8 scope host lo\n"
                        "       valid_lft forever preferred_lft forever\n"
                        "    inet6 ::1/128 scope host \n"
                        "       valid_lft forever preferred_lft forever"
                    )
            elif name == "wlan0":
                state = "<BROADCAST,MULTICAST,UP,LOWER_UP>" if up else "<BROADCAST,MULTICAST>"
                out.append(
                    f"32: wlan0: {state} mtu 1500 qdisc mq state {'UP' if up else 'DOWN'} group "
                    f"default qlen 3000\n    link/ether {WLAN_MAC} brd ff:ff:ff:ff:ff:ff"
                )
                if up and not link_only:
                    out.append(
                        f"    inet {WLAN_IP}/24 brd 192.168.1.255 scope global wlan0\n"
                        "       valid_lft forever preferred_lft forever\n"
                        f"    inet6 {WLAN_IP6}/64 scope link \n"
                        "       valid_lft forever preferred_lft forever"
                    )
            else:
                ctx.error(f'Device "{name}" does not exist.\n')
                return 1
        ctx.write("\n".join(out) + "\n")
        return 0
    if obj in ("r", "route"):
        if up:
            ctx.write(f"192.168.1.0/24 dev wlan0 proto kernel scope link src {WLAN_IP} \n")
        return 0
    if not obj:
        ctx.error("Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\n")
        return 255
    ctx.error(f'Object "{obj}" is unknown, try "ip help".\n')
    return 255


_NC_VALUE_FLAGS = {"-p", "-q", "-W", "-w", "-s"}


def cmd_nc(ctx: CommandContext) -> int:
    """toybox nc to the phone's own localhost: a port `adb reverse` maps reaches the host's
    socket through the adb server, as on a phone; any other address is refused (this phone
    has no network)."""
    args = ctx.argv[1:]
    operands: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in _NC_VALUE_FLAGS:
            i += 2
            continue
        if not args[i].startswith("-"):
            operands.append(args[i])
        i += 1
    if len(operands) != 2 or not operands[1].isdigit():
        ctx.error(
            "usage: nc [-46Uul] [-pqWw #] [-s addr] {IPADDR PORTNUM|-f FILENAME|COMMAND...}\n"
        )
        return 1
    host, port = operands
    try:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ConnectionRefusedError(host)
        stream = ctx.device.open_reverse(int(port))
    except ConnectionRefusedError:
        ctx.error("nc: connect: Connection refused\n")
        return 1

    def feed() -> None:  # stdin -> the host; adb streams have no half-close, so just stop
        try:
            while chunk := ctx.stdin.read_chunk():
                stream.write(chunk)
        except Exception:  # the stream closed or the command was cancelled
            return

    feeder = threading.Thread(target=feed, name="nc-stdin", daemon=True)
    feeder.start()
    try:
        while True:
            data = stream.read(timeout=0.1)
            if data is None:
                ctx.cancelled.check()
                continue
            if not data:
                return 0
            ctx.stdout.write(data)
    finally:
        stream.close()


def cmd_svc(ctx: CommandContext) -> int:
    """`svc wifi|data|power|usb ...` as the shell user may use it."""
    args = ctx.argv[1:]
    settings = ctx.device.settings["global"]
    if args[:1] == ["wifi"] and args[1:2] in (["enable"], ["disable"]):
        settings["wifi_on"] = "1" if args[1] == "enable" else "0"
        ctx.device.logs.write(
            "WifiService",
            f"setWifiEnabled package=com.android.shell uid=2000 enable="
            f"{'true' if args[1] == 'enable' else 'false'}",
            pid=1450,
            buffer="main",
        )
        return 0
    if args[:1] == ["data"] and args[1:2] in (["enable"], ["disable"]):
        settings["mobile_data"] = "1" if args[1] == "enable" else "0"
        return 0
    if args[:1] == ["power"] and args[1:2] == ["stayon"] and len(args) > 2:
        value = {"true": "7", "false": "0", "usb": "2", "ac": "1", "wireless": "4"}.get(args[2])
        if value is None:
            ctx.error("Usage: svc power stayon [true|false|usb|ac|wireless]\n")
            return 1
        settings["stay_on_while_plugged_in"] = value
        return 0
    if args[:2] == ["power", "reboot"]:
        ctx.device.reboot()
        return 0
    if args[:2] == ["usb", "getFunctions"]:
        ctx.write("mtp,adb\n")
        return 0
    ctx.write(
        "Available commands:\n    help     Show information about the subcommands\n"
        "    power    Control the power manager\n    data     Control mobile data "
        "connectivity\n    wifi     Control the Wi-Fi manager\n    usb      Control Usb state\n"
    )
    return 0 if not args or args[0] == "help" else 1


# -- storage and processes ----------------------------------------------------------------------
_MOUNTS = (  # device, 1K-blocks, used, mount point (an S24 with 256 GB)
    ("/dev/block/dm-6", 6_012_184, 6_012_184, "/"),
    ("tmpfs", 3_787_308, 1_744, "/dev"),
    ("tmpfs", 3_787_308, 0, "/mnt"),
    ("/dev/block/dm-7", 1_612_020, 1_612_020, "/vendor"),
    ("/dev/block/dm-8", 3_204_500, 3_204_500, "/product"),
    ("/dev/block/dm-46", 231_042_640, 48_731_112, "/data"),
    ("/dev/fuse", 231_042_640, 48_731_112, "/storage/emulated"),
)


def _data_used_kb(ctx: CommandContext) -> int:
    total = 0
    for path in ctx.fs.glob("/data/local/tmp/*") + ctx.fs.glob("/data/app/*/*/*"):
        try:
            info = ctx.fs.stat(path)
        except Exception:
            continue
        total += info.size
    return total // 1024


def _human(kb: int) -> str:
    value = float(kb)
    for unit in ("K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if value >= 10 or unit == "K" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.0f}T"


def cmd_df(ctx: CommandContext) -> int:
    opts = {c for a in ctx.argv[1:] if a.startswith("-") for c in a[1:]}
    paths = [a for a in ctx.argv[1:] if not a.startswith("-")]
    extra = _data_used_kb(ctx)
    rows = []
    for device, blocks, used, mount in _MOUNTS:
        if mount in ("/data", "/storage/emulated"):
            used += extra
        rows.append((device, blocks, used, blocks - used, mount))
    if paths:
        chosen = []
        for path in paths:
            norm = ctx.fs.normpath(path, ctx.cwd)
            best = max(
                (r for r in rows if norm == r[4] or norm.startswith(r[4].rstrip("/") + "/")),
                key=lambda r: len(r[4]),
            )
            chosen.append(best)
        rows = chosen
    human = "h" in opts
    header = "Filesystem" + (
        "      Size  Used Avail Use% Mounted on"
        if human
        else "        1K-blocks     Used Available Use% Mounted on"
    )
    lines = [header]
    for device, blocks, used, avail, mount in rows:
        pct = f"{(used * 100 + blocks - 1) // blocks if blocks else 0}%"
        if human:
            sizes = f"{_human(blocks):>6}{_human(used):>6}{_human(avail):>6}"
            lines.append(f"{device:<16}{sizes}{pct:>5} {mount}")
        else:
            lines.append(f"{device:<17}{blocks:>10}{used:>9}{avail:>10}{pct:>5} {mount}")
    ctx.write("\n".join(lines) + "\n")
    return 0


def cmd_top(ctx: CommandContext) -> int:
    """toybox top, batch mode: `top -b -n N [-d S] [-m MAX] [-p PID] [-u USER]`."""
    args = ctx.argv[1:]
    iterations, delay, limit = 0, 3.0, 0
    pids: set[int] = set()
    users: set[str] = set()
    i = 0
    while i < len(args):
        arg, value = args[i], args[i + 1] if i + 1 < len(args) else ""
        if arg == "-n" and value.isdigit():
            iterations, i = int(value), i + 1
        elif arg == "-d":
            delay, i = float(value or 3), i + 1
        elif arg == "-m" and value.isdigit():
            limit, i = int(value), i + 1
        elif arg == "-p":
            pids, i = {int(p) for p in value.split(",") if p.isdigit()}, i + 1
        elif arg == "-u":
            users, i = set(value.split(",")), i + 1
        i += 1
    device = ctx.device
    count = 0
    while True:
        mem = device.meminfo()
        procs = device.process_list()
        load = device.model.load()
        busy = min(_CPUS * 100, int(40 + load * _CPUS * 85))
        user_pct, sys_pct = busy * 6 // 10, busy * 3 // 10
        idle = _CPUS * 100 - user_pct - sys_pct - 2
        used = mem["MemTotal"] - mem["MemFree"]
        swap_used = mem["SwapTotal"] - mem["SwapFree"]
        lines = [
            f"Tasks: {len(procs)} total,   1 running, {len(procs) - 1} sleeping,   0 stopped,   "
            "0 zombie",
            f"  Mem: {mem['MemTotal']:>8}K total, {used:>8}K used, {mem['MemFree']:>8}K free, "
            f"{mem['Buffers']:>8}K buffers",
            f" Swap: {mem['SwapTotal']:>8}K total, {swap_used:>8}K used, {mem['SwapFree']:>8}K "
            f"free, {mem['Cached']:>8}K cached",
            f"{_CPUS * 100}%cpu {user_pct:>3}%user   0%nice {sys_pct:>3}%sys {idle:>3}%idle   "
            "0%iow   2%irq   0%sirq   0%host",
            "  PID USER         PR  NI VIRT  RES  SHR S[%CPU] %MEM     TIME+ ARGS",
        ]
        shown = [p for p in procs if (not pids or p.pid in pids) and (not users or p.uid in users)]
        shown.sort(key=lambda p: -p.rss_kb)
        for proc in shown[: limit or None]:
            cpu = 0.0
            if proc.pid == ctx.shell.state.pid or proc.name == "top":
                cpu = 3.3
            elif "." in proc.name or proc.name == "llama-cli":
                cpu = round(load * 100 * 0.8, 1)
            lines.append(
                f"{proc.pid:>5} {proc.uid:<12} 20   0 {_human(proc.vsz_kb):>4} "
                f"{_human(proc.rss_kb):>4} {_human(proc.rss_kb * 3 // 4):>4} "
                f"{'R' if cpu else 'S'} {cpu:>5.1f} {proc.rss_kb * 100 / mem['MemTotal']:>4.1f}"
                f"   0:00.{proc.pid % 100:02d} {proc.args or proc.name}"
            )
        ctx.write("\n".join(lines) + "\n")
        count += 1
        if iterations and count >= iterations:
            return 0
        ctx.sleep(delay)


def cmd_ime(ctx: CommandContext) -> int:
    """`ime list [-s|-a]`, `ime enable|disable|set ID`."""
    args = ctx.argv[1:]
    secure = ctx.device.settings["secure"]
    current = secure.get("default_input_method", _IME_ID)
    known = [_IME_ID, *[i for i in secure.get("enabled_input_methods", "").split(":") if i]]
    known = list(dict.fromkeys(known))
    if args[:1] == ["list"]:
        if "-s" in args:
            ctx.write("".join(f"{ime}\n" for ime in known))
        else:
            for ime in known:
                package, _, service = ime.partition("/")
                ctx.write(
                    f"{ime}:\n  mId={ime} mSettingsActivity=null mIsVrOnly=false "
                    f"mSupportsSwitchingToNextInputMethod=true\n  mIsDefaultResId=0x0\n"
                    f"  Service:\n    priority=0 preferredOrder=0 match=0x108000 "
                    f"specificIndex=-1 isDefault=false\n    ServiceInfo:\n      "
                    f"name={package}{service}\n      packageName={package}\n"
                )
        return 0
    if args[:1] in (["enable"], ["disable"], ["set"]) and len(args) > 1:
        ime = args[-1]
        if args[0] == "set":
            secure["default_input_method"] = ime
            ctx.write(f"Input method {ime} selected for user #0\n")
        elif args[0] == "enable":
            if ime not in known:
                known.append(ime)
            secure["enabled_input_methods"] = ":".join(known)
            ctx.write(f"Input method {ime}: now enabled for user #0\n")
        else:
            ctx.write(f"Input method {ime}: now disabled for user #0\n")
        return 0
    if args[:1] == ["reset"]:
        secure["default_input_method"] = _IME_ID
        ctx.write(f"Reset current and enabled IMEs for user #0\n  Selected: {_IME_ID}\n")
        return 0
    ctx.write(
        f"ime <command>:\n  list [-a] [-s]\n  enable [--user <USER_ID>] <ID>\n"
        f"  disable [--user <USER_ID>] <ID>\n  set [--user <USER_ID>] <ID>\n"
        f"Current: {current}\n"
    )
    return 0


def cmd_reboot(ctx: CommandContext) -> int:
    ctx.device.reboot()
    return 0


def system_tools() -> dict[str, CommandHandler]:
    return {
        "cmd": cmd_cmd,
        "ifconfig": cmd_ifconfig,
        "ip": cmd_ip,
        "nc": cmd_nc,
        "svc": cmd_svc,
        "df": cmd_df,
        "top": cmd_top,
        "ime": cmd_ime,
        "reboot": cmd_reboot,
    }
