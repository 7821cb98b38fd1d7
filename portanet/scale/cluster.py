"""Connect to a Ray cluster, or start a private local one, and always leave it as found.

Nothing here hangs on a wrong address: ``HOST:PORT`` is probed with a short TCP connect and then
one gRPC call to Ray's GCS (``GetClusterId``, 3 s deadline) before Ray is asked, so a listener
that is not a Ray head is refused in seconds; ``ray://HOST:PORT`` (Ray Client) is probed the same
way with a ``ClusterInfo`` ping to the client server; Ray's own connection errors become
:class:`~portanet.errors.InputError`.

Ray's own log lines (its C++ core worker writes to the process's stderr, Ray Data logs and
progress bars) are kept out of the terminal unless ``debug``: stderr is pointed at a log file in
the session's temp dir for the session's duration, so portanet's own message is the only line a
user sees. SIGTERM inside a session is turned into :class:`Interrupted` (a clean unwind:
the cluster is stopped, nothing partial is left) instead of Ray's native stack dump.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from portanet.errors import InputError
from portanet.scale.signals import (
    Interrupted,
    hold_signals,
    release_signals,
    restore_python_signals,
    sigterm_during_init,
    stop_on_signals,
)

#: Seconds to wait for a TCP connection to the cluster's address before giving up.
CONNECT_TIMEOUT_S = 3.0
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@contextlib.contextmanager
def _private_token() -> Iterator[None]:
    """Token authentication with a fresh token held in this process's environment, unless the
    user configured Ray's authentication: Ray would otherwise write ~/.ray/auth_token."""
    if any(name in os.environ for name in _AUTH_ENV):
        yield
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    try:
        yield
    finally:
        os.environ.pop("RAY_AUTH_MODE", None)
        os.environ.pop("RAY_AUTH_TOKEN", None)


def _host_port(address: str) -> tuple[str, int] | None:
    bare = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = bare.rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_client(address: str | None) -> bool:
    """Whether ``address`` is a Ray Client address (``ray://HOST:PORT``)."""
    return bool(address) and str(address).startswith("ray://")


def check_address(address: str | None) -> None:
    """Refuse, before anything starts, text that is not ``auto``, ``HOST:PORT`` or
    ``ray://HOST:PORT``."""
    if not address or address == "auto":
        return
    if _host_port(address) is None or ("://" in address and not is_client(address)):
        raise InputError(
            f"Ray address {address!r}: expected auto, HOST:PORT (the head's GCS, e.g. "
            f"10.0.0.5:6379) or ray://HOST:PORT (Ray Client, e.g. ray://10.0.0.5:10001)"
        )


def _probe(address: str) -> None:
    target = _host_port(address)
    if target is None:
        raise InputError(f"Ray address {address!r}: expected auto or HOST:PORT")
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        why = (
            f"no answer within {CONNECT_TIMEOUT_S:.0f} s"
            if isinstance(exc, TimeoutError)
            else exc.strerror or type(exc).__name__
        )
        raise InputError(
            f"no Ray cluster at {address}: expected a Ray head listening there, got {why}"
        ) from exc
    _probe_grpc(address, target)


def _probe_grpc(address: str, target: tuple[str, int]) -> None:
    """One gRPC call with a deadline, to the GCS (``GetClusterId``) or for ``ray://`` to the
    Ray Client server (``ClusterInfo`` PING): any gRPC answer (even "unauthenticated") shows
    Ray; silence, a closed connection or "unimplemented" shows something else."""
    import grpc

    host, port = target
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            if is_client(address):
                from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

                messages: Any = ray_client_pb2  # generated protobuf: no attributes to check
                ping = messages.ClusterInfoRequest(type=messages.ClusterInfoType.PING)
                client = ray_client_pb2_grpc.RayletDriverStub(channel)
                client.ClusterInfo(ping, timeout=CONNECT_TIMEOUT_S)
            else:
                from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

                stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
                request = gcs_service_pb2.GetClusterIdRequest()  # type: ignore[attr-defined]
                stub.GetClusterId(request, timeout=CONNECT_TIMEOUT_S)
            return
        except grpc.RpcError as exc:
            code = exc.code()
            if code not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.UNIMPLEMENTED,
                grpc.StatusCode.INTERNAL,
                grpc.StatusCode.UNKNOWN,
            ):
                return  # a gRPC server that knows the Ray service answered (e.g. auth)
            why = (
                f"no gRPC answer within {CONNECT_TIMEOUT_S:.0f} s"
                if code == grpc.StatusCode.DEADLINE_EXCEEDED
                else f"{code.name.lower()}: {(exc.details() or '').splitlines()[0][:120]}"
            )
    if is_client(address):
        raise InputError(
            f"no Ray cluster at {address}: something listens there but is not a Ray Client "
            f"server ({why}); expected the head's Ray Client port (default 10001), or its "
            f"GCS address without ray:// (--address HOST:6379)"
        )
    raise InputError(
        f"no Ray cluster at {address}: something listens there but is not a Ray head's GCS "
        f"({why}); expected the address printed by `ray start --head` (default port 6379)"
    )


@contextlib.contextmanager
def ray_session(
    address: str | None = None, *, num_cpus: int | None = None, debug: bool = False
) -> Iterator[bool]:
    """A connected Ray session for the duration of the block.

    ``address=None`` starts a private local cluster (its own short temp dir, loopback only,
    ``num_cpus`` CPUs, default all this process may use) and stops it at the end. Otherwise
    connects to ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` (Ray Client) and disconnects at
    the end.
    A session already open in this process is used as it is. Yields whether it started a
    cluster. Without ``debug``, Ray's own output goes to a log file, not to stderr.
    """
    check_address(address)
    target = _host_port(address) if address and address != "auto" else None
    if address is None or (target is not None and _is_loopback(target[0])):
        # Loopback only: otherwise Ray may advertise another local address for this node.
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    with contextlib.ExitStack() as stack:
        if address is None and "ray" not in sys.modules:
            # Ray reads its authentication settings when it is first imported.
            stack.enter_context(_private_token())
        import ray

        if ray.is_initialized():
            yield False
            return
        if address is not None and address != "auto":
            _probe(address)
        if not debug:
            _quiet_ray_logs()
        with stop_on_signals(), contextlib.ExitStack() as quiet:
            if not debug:
                quiet.enter_context(_stderr_to_log())
            yield from _connected(address, num_cpus)


def _quiet_ray_logs() -> None:
    """No log lines from Ray's Python loggers (``--debug`` shows them)."""
    import logging

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_ray_data() -> None:
    """No progress bars or per-operator log lines from Ray Data (imports ``ray.data``, about a
    second: called only by the runs that use it)."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    _quiet_ray_logs()


@contextlib.contextmanager
def _stderr_to_log() -> Iterator[None]:
    """Point file descriptor 2 at a log file for the block (Ray's C++ logging writes to the
    descriptor, not to ``sys.stderr``); restored afterwards, the log removed."""
    sys.stderr.flush()
    handle, name = tempfile.mkstemp(prefix="portanet-ray-", suffix=".log")
    saved = os.dup(2)
    try:
        os.dup2(handle, 2)
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(handle)
        with contextlib.suppress(OSError):
            os.unlink(name)


#: Times Ray Client is asked for a session: its proxy starts a server process per client,
#: which on a loaded head can miss the proxy's own start-up deadline ("Initialization failure
#: from server"); a second request usually finds the machine less busy.
CLIENT_ATTEMPTS = 2


def _init_remote(address: str) -> None:
    """``ray.init`` at a head's GCS address, or through Ray Client for ``ray://``, asking
    Ray Client again when its per-client server failed to start."""
    import ray

    for attempt in range(1, CLIENT_ATTEMPTS + 1):
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
            return
        except (ConnectionError, RuntimeError) as exc:
            retry = is_client(address) and "Initialization failure from server" in str(exc)
            if not retry or attempt == CLIENT_ATTEMPTS:
                raise
            ray.shutdown()


def _connected(address: str | None, num_cpus: int | None) -> Iterator[bool]:
    import ray

    temp_dir = None
    held = hold_signals()  # a signal inside ray.init can deadlock Ray's own teardown
    try:
        with sigterm_during_init():
            if address is None:
                from portanet.runtime.providers import usable_cpus

                temp_dir = tempfile.mkdtemp(prefix="pnr-", dir="/tmp")
                ray.init(
                    address="local",
                    num_cpus=num_cpus or usable_cpus(),
                    include_dashboard=False,
                    _temp_dir=temp_dir,
                    log_to_driver=False,
                    configure_logging=False,
                )
            else:
                _init_remote(address)
    except Interrupted:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        release_signals(held)
        raise
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        release_signals(held)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = f"at {address}" if address else "on this machine"
        raise InputError(f"no Ray cluster {where}: {first[:300]}") from exc
    except BaseException:
        release_signals(held)
        raise
    restore_python_signals()
    try:
        release_signals(held)  # a signal held during ray.init raises Interrupted here
        yield address is None
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
