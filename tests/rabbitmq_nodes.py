"""RabbitMQ nodes only our own tests need: a local Erlang cluster, and a node with a TLS listener.

Built on the plugin's local node (``asgi_conformance.servers.rabbitmq``) from the machine's
binaries; a container would need the same cookie, epmd and certificate files mounted.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from asgi_conformance.servers import Fault, ServerError, Servers, local_rabbitmq_server, wait_for_accept
from asgi_conformance.servers.network import LOOPBACK, free_port
from asgi_conformance.servers.processes import owned_servers
from asgi_conformance.servers.rabbitmq import LocalRabbitMQ, SharedEpmd, rabbitmq_binaries, start_epmd
from tests.tls_certificates import make_tls_files

TLS_LISTENER_WAIT = 60.0  # seconds after the node's AMQP port accepts, for its TLS listener
FAILOVER_WAIT = 30.0  # seconds for the surviving node to accept after the first is lost


class ErlangCluster(Servers):
    """Nodes of one Erlang cluster, whose fault handle adds a failover: losing a node."""

    @property
    def faults(self) -> frozenset[Fault]:
        return super().faults | {Fault.FAILOVER}

    def failover(self) -> None:
        """Stop the first node still running (by its pid; its classic queues go with it) and
        return once another node accepts AMQP connections."""
        running = [node for node in self.servers if isinstance(node, LocalRabbitMQ) and node.pid is not None]
        if len(running) < 2:
            raise ServerError(f"{self!r}: {len(running)} node(s) running, none to fail over to")
        lost, survivor = running[0], running[1]
        lost.stop()
        if not wait_for_accept(LOOPBACK, survivor.process.port, FAILOVER_WAIT):
            raise ServerError(f"{survivor!r} did not accept connections within {FAILOVER_WAIT} s of the failover")


@contextlib.contextmanager
def local_rabbitmq_cluster(nodes: int = 2) -> Iterator[Servers]:
    """An Erlang cluster of ``nodes`` RabbitMQ nodes (one epmd, one cookie; each node after the
    first joins the first); ``.urls`` lists every node, ``cluster[i].stop()`` takes one down, and
    ``cluster.failover()`` takes the first that runs down."""
    binaries = rabbitmq_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="asgi-conformance-epmd-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        epmd = start_epmd(binaries.epmd, workdir)
        stack.callback(epmd.close)
        shared = SharedEpmd(epmd.port, secrets.token_hex(16).upper())
        first_node: list[str] = []  # filled by the first node started

        def start_node() -> LocalRabbitMQ:
            node = LocalRabbitMQ(binaries, shared_epmd=shared)
            if not first_node:
                first_node.append(node.node_name)
                return node
            try:
                for command in (["stop_app"], ["join_cluster", first_node[0]], ["start_app"]):
                    node.ctl(*command)
            except BaseException:
                node.stop()
                raise
            return node

        yield ErlangCluster(stack.enter_context(owned_servers([start_node] * nodes)).servers)


@dataclass(frozen=True)
class TLSBroker:
    """A node with one more listener, TLS only, whose certificate ``authority`` signed."""

    url: str  # amqps:// to the TLS listener
    plain_url: str  # amqp:// to that same TLS port: a client that forgot TLS
    authority: Path  # the CA file a client must trust
    node: LocalRabbitMQ


@contextlib.contextmanager
def tls_rabbitmq_node(folder: Path) -> Iterator[TLSBroker]:
    """A local node listening for TLS with a throwaway certificate (files in ``folder``)."""
    files = make_tls_files(folder)
    port = free_port()
    config = (f"listeners.ssl.local = {LOOPBACK}:{port}\n"
              f"ssl_options.cacertfile = {files.authority}\n"
              f"ssl_options.certfile = {files.certificate}\n"
              f"ssl_options.keyfile = {files.key}\n"
              "ssl_options.verify = verify_none\n"
              "ssl_options.fail_if_no_peer_cert = false\n")
    with local_rabbitmq_server(config) as servers:
        node = servers[0]
        assert isinstance(node, LocalRabbitMQ)
        if not wait_for_accept(LOOPBACK, port, TLS_LISTENER_WAIT):
            raise ServerError(f"the broker's TLS listener never opened; log: {node.log}")
        yield TLSBroker(f"amqps://guest:guest@{LOOPBACK}:{port}/%2F", f"amqp://guest:guest@{LOOPBACK}:{port}/%2F",
                        files.authority, node)
