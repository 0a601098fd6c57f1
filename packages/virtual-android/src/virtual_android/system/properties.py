"""init's property service: the phone's system properties, `getprop` and `setprop`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .service import SystemService

if TYPE_CHECKING:
    from ..shell.interpreter import CommandContext, CommandHandler

__all__ = ["FINGERPRINT", "PROPS", "PropertyService"]

FINGERPRINT = "samsung/e1sxxx/e1s:14/UP1A.231005.007/S921BXXS3AXI1:user/release-keys"

PROPS: dict[str, str] = {
    "ro.product.model": "SM-S921B",
    "ro.product.name": "e1sxxx",
    "ro.product.device": "e1s",
    "ro.product.brand": "samsung",
    "ro.product.manufacturer": "samsung",
    "ro.product.board": "s5e9945",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.product.cpu.abilist64": "arm64-v8a",
    "ro.product.cpu.abilist32": "armeabi-v7a,armeabi",
    "ro.product.locale": "en-GB",
    "ro.product.system.model": "SM-S921B",
    "ro.product.vendor.model": "SM-S921B",
    "ro.board.platform": "s5e9945",
    "ro.soc.manufacturer": "Samsung",
    "ro.soc.model": "s5e9945",
    "ro.hardware": "s5e9945",
    "ro.hardware.chipname": "s5e9945",
    "ro.arch": "exynos2400",
    "ro.chipname": "exynos2400",
    "ro.build.version.release": "14",
    "ro.build.version.release_or_codename": "14",
    "ro.build.version.sdk": "34",
    "ro.build.version.security_patch": "2024-09-01",
    "ro.build.version.incremental": "S921BXXS3AXI1",
    "ro.build.version.codename": "REL",
    "ro.build.id": "UP1A.231005.007",
    "ro.build.display.id": "UP1A.231005.007.S921BXXS3AXI1",
    "ro.build.type": "user",
    "ro.build.tags": "release-keys",
    "ro.build.characteristics": "phone",
    "ro.build.fingerprint": FINGERPRINT,
    "ro.bootimage.build.fingerprint": FINGERPRINT,
    "ro.vendor.build.fingerprint": FINGERPRINT,
    "ro.serialno": "R5CX40S24VT",
    "ro.boot.serialno": "R5CX40S24VT",
    "ro.debuggable": "0",
    "ro.secure": "1",
    "ro.adb.secure": "0",
    "ro.sf.lcd_density": "416",
    "ro.opengles.version": "196610",
    "ro.config.ringtone": "Over_the_Horizon.ogg",
    "ro.crypto.state": "encrypted",
    "ro.treble.enabled": "true",
    "ro.vndk.version": "34",
    "ro.zygote": "zygote64_32",
    "ro.kernel.version": "6.1",
    "ro.csc.sales_code": "EUX",
    "ro.boot.hardware": "s5e9945",
    "ro.boot.em.model": "SM-S921B",
    "ro.hardware.egl": "samsung",
    "ro.hardware.vulkan": "samsung",
    "sys.boot_completed": "1",
    "dev.bootcomplete": "1",
    "init.svc.adbd": "running",
    "persist.sys.timezone": "Europe/London",
    "persist.sys.usb.config": "mtp,adb",
    "service.adb.tcp.port": "5555",
    "gsm.operator.alpha": "",
    "ril.serialnumber": "R5CX40S24VT",
    "dalvik.vm.heapsize": "512m",
    "dalvik.vm.heapgrowthlimit": "256m",
}


class PropertyService(SystemService):
    """The properties of one boot: `ro.*` are fixed once set, `persist.*` outlive a reboot."""

    def __init__(self) -> None:
        self.props: dict[str, str] = dict(PROPS)

    def reboot(self) -> None:
        self.props = {**PROPS, **{k: v for k, v in self.props.items() if k.startswith("persist.")}}

    def commands(self) -> dict[str, CommandHandler]:
        return {"getprop": self.getprop, "setprop": self.setprop}

    def getprop(self, ctx: CommandContext) -> int:
        props = self.props
        args = [a for a in ctx.argv[1:] if not a.startswith("-")]
        if not args:
            for key in sorted(props):
                ctx.write(f"[{key}]: [{props[key]}]\n")
            return 0
        value = props.get(args[0])
        if value is None:
            value = args[1] if len(args) > 1 else ""
        ctx.write(value + "\n")
        return 0

    def setprop(self, ctx: CommandContext) -> int:
        if len(ctx.argv) != 3:
            ctx.error("setprop: need 2 arguments\n")
            return 1
        key, value = ctx.argv[1], ctx.argv[2]
        if key.startswith("ro.") and key in self.props:
            ctx.error(
                f"Failed to set property '{key}' to '{value}'.\nSee dmesg for error reason.\n"
            )
            return 1
        self.props[key] = value
        return 0
