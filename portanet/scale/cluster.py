"""Connect to a Ray cluster, or start a private local one, and always leave it as found.

Nothing here hangs on a wrong address: ``HOST:PORT`` and ``ray://HOST:PORT`` are probed with a
short TCP connect before Ray is asked, and Ray's own connection errors become
:class:`~portanet.errors.InputError`.
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

from portanet.errors import InputError

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


def _probe(address: str) -> None:
    target = _host_port(address)
    if target is None:
        raise InputError(f"Ray address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
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


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[bool]:
    """A connected Ray session for the duration of the block.

    ``address=None`` starts a private local cluster (its own short temp dir, loopback only,
    ``num_cpus`` CPUs, default all this process may use) and stops it at the end. Otherwise
    connects to ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` and disconnects at the end. A
    session already open in this process is used as it is. Yields whether it started a cluster.
    """
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
        yield from _connected(address, num_cpus)


def _connected(address: str | None, num_cpus: int | None) -> Iterator[bool]:
    import ray

    temp_dir = None
    try:
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
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = f"at {address}" if address else "on this machine"
        raise InputError(f"no Ray cluster {where}: {first[:300]}") from exc
    try:
        yield address is None
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
