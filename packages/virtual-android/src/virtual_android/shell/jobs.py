"""What runs beside the shell in threads: pipeline stages (`a | b`) and background jobs
(`cmd &`, each a process of its own with a pid, joined by `wait`)."""

from __future__ import annotations

import logging
import posixpath
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from .builtins import ExitShell, LoopControl
from .parser import Node, Pipeline, SimpleCommand
from .shellio import BrokenPipe, BytesInput, Pipe, ShellCancelled

if TYPE_CHECKING:
    from .interpreter import IO, Interpreter, ShellState

log = logging.getLogger(__name__)


def spawn_background(sh: Interpreter, item: Node, io: IO, state: ShellState) -> None:
    child_state = state.copy()
    bg_io = replace(io, stdin=BytesInput(b""))
    # The job is a process of its own: `kill PID` stops it (and only it), closing the
    # session stops it too.
    job_token = sh.token.child()
    name = "sh"
    if isinstance(item, SimpleCommand) and item.words:
        name = posixpath.basename(item.words[0].literal_text()) or "sh"
    pid = sh.device.register_job(name, state.pid, job_token)
    child_state.pid = pid
    job = sh.fork(job_token, child_state)

    def runner() -> None:
        try:
            job.run_node(item, bg_io, child_state)
        except (ShellCancelled, BrokenPipe, ExitShell, LoopControl):
            pass
        except Exception:
            log.exception("background job failed")
        finally:
            job_token.detach()
            sh.device.unregister_process(pid)

    thread = threading.Thread(target=runner, name="sh-bg", daemon=True)
    sh.jobs = [j for j in sh.jobs if j.is_alive()]
    sh.jobs.append(thread)
    sh.last_job_pid = pid
    thread.start()


def run_pipeline(sh: Interpreter, node: Pipeline, io: IO, state: ShellState) -> int:
    commands = node.commands
    if len(commands) == 1:
        if node.negate:
            with sh.tested():
                status = sh.run_node(commands[0], io, state)
        else:
            status = sh.run_node(commands[0], io, state)
    else:
        pipes = [Pipe(sh.token) for _ in commands[:-1]]
        threads: list[threading.Thread] = []
        for index, command in enumerate(commands[:-1]):
            stage_io = replace(
                io,
                stdin=pipes[index - 1].reader if index > 0 else io.stdin,
                stdout=pipes[index].writer,
            )
            thread = threading.Thread(
                target=_run_stage,
                args=(sh, command, stage_io, state.copy(), index > 0),
                name="sh-pipe",
                daemon=True,
            )
            threads.append(thread)
            thread.start()
        last_io = replace(io, stdin=pipes[-1].reader)
        try:
            status = _stage_status(sh, commands[-1], last_io, state.copy())
        finally:
            pipes[-1].reader.close()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)
                if sh.token.is_set():
                    break
        sh.token.check()
    if node.negate:
        status = 0 if status else 1
    return status


def _stage_status(sh: Interpreter, command: Node, io: IO, state: ShellState) -> int:
    try:
        return sh.run_node(command, io, state)
    except ExitShell as exc:
        return exc.code & 0xFF
    except BrokenPipe:
        return 141
    except LoopControl:
        return 0


def _run_stage(
    sh: Interpreter, command: Node, io: IO, state: ShellState, close_input: bool
) -> None:
    try:
        _stage_status(sh, command, io, state)
    except ShellCancelled:
        pass
    except Exception:
        log.exception("pipeline stage failed")
    finally:
        io.stdout.close()
        if close_input:
            io.stdin.close()


def wait_jobs(sh: Interpreter) -> None:
    for job in list(sh.jobs):
        while job.is_alive():
            sh.token.check()
            job.join(0.05)
    sh.jobs = []
