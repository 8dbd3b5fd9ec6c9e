"""Real Redis deployments for the `cluster` tests, every server a `redis-server` of the test's own
on a free loopback port, stopped by pid: a Redis Cluster of three masters with a replica each, and a
master with one replica watched by three sentinels."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import key_slot

from service.harness.processes import (
    HOST,
    ServerProcess,
    free_port,
    port_accepts,
    redis_server_command,
    serving,
    wait_until,
)

# How long a master may be unreachable before the cluster (or sentinels) fail it over: short, so
# a failover takes seconds, as a deployment tuned for fast failover would have it.
NODE_TIMEOUT_MS = 2000
SENTINEL_DOWN_AFTER_MS = 1000
MASTER_NAME = "gkmaster"
# Failing a master over: detection, election, promotion. Generous for a busy machine.
FAILOVER_WITHIN_S = 60.0
# The servers' REDIS_TIMEOUT. A new connection here costs a question to a sentinel or a slot
# map read on top of the round trip, and this machine's 2 cores are shared with other test
# runs: at the default 0.05 s, a burst's first batches can time out and fall back.
SERVE_REDIS_TIMEOUT_S = 0.25
CLUSTER_OPTIONS = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
CLUSTER_OPTIONS += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]


@dataclass(frozen=True, slots=True)
class RedisNode:
    server: ServerProcess

    @property
    def port(self) -> int:
        return self.server.port

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def ask(self, *command: str | int) -> object:
        with self.client() as client:
            return client.execute_command(*command)

    def is_alive(self) -> bool:
        return self.server.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the server dies mid-work, as a crashed host's would."""
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.process.wait(timeout=10)


@contextlib.contextmanager
def _nodes(workdir: Path, extra: list[list[str]]) -> Iterator[list[RedisNode]]:
    """One `redis-server` per entry of `extra` (its further options), each in a directory of its
    own; all stopped by pid after the block."""
    with contextlib.ExitStack() as stack:
        nodes = []
        for index, options in enumerate(extra):
            port = free_port()
            home = workdir / f"node{index}-{port}"
            home.mkdir(parents=True)
            command = [*redis_server_command(port, home), *options]
            if options[:1] == ["--sentinel"]:  # a sentinel reads (and rewrites) a config file
                config = home / "sentinel.conf"
                lines = [f"bind {HOST}", f"port {port}", f"dir {home}", *options[1:]]
                config.write_text("\n".join(lines) + "\n")
                command = [command[0], str(config), "--sentinel"]
            started = stack.enter_context(
                serving(command, port=port, log=home / "log", ready=lambda s: port_accepts(s.port))
            )
            nodes.append(RedisNode(started))
        yield nodes


@dataclass(frozen=True, slots=True)
class ClusterRig:
    nodes: list[RedisNode]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes[:3])

    def master_ports(self) -> dict[int, int]:
        """Per slot range start, the port of the master serving it, as a living node sees it."""
        living = next(node for node in self.nodes if node.is_alive())
        slots = living.ask("CLUSTER", "SLOTS")
        assert isinstance(slots, list)
        return {int(entry[0]): int(entry[2][1]) for entry in slots}

    def master_of(self, key: str) -> RedisNode:
        slot = key_slot(key.encode())
        living = next(node for node in self.nodes if node.is_alive())
        slots = living.ask("CLUSTER", "SLOTS")
        assert isinstance(slots, list)
        port = next(int(e[2][1]) for e in slots if int(e[0]) <= slot <= int(e[1]))
        return next(node for node in self.nodes if node.port == port)

    def is_serving(self) -> bool:
        """Every living node says `cluster_state:ok` and every slot's master is alive."""
        living = [node for node in self.nodes if node.is_alive()]
        alive = {node.port for node in living}
        try:
            states = [str(node.ask("CLUSTER", "INFO")) for node in living]
            return all("cluster_state:ok" in s for s in states) and all(
                port in alive for port in self.master_ports().values()
            )
        except redis.RedisError:
            return False


@contextlib.contextmanager
def redis_cluster(workdir: Path) -> Iterator[ClusterRig]:
    """Three masters and three replicas (`redis-cli --cluster create --cluster-replicas 1`),
    ready when every node reports the cluster ok and each replica is in sync."""
    # Each its own bus port: the default, port + 10000, may be taken or past 65535.
    options = [[*CLUSTER_OPTIONS, "--cluster-port", str(free_port())] for _ in range(6)]
    with _nodes(workdir, options) as nodes:
        addresses = [f"{HOST}:{node.port}" for node in nodes]
        create = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "1"]
        subprocess.run(
            [*create, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        rig = ClusterRig(nodes)
        wait_until(lambda: rig.is_serving() and _replicas_in_sync(nodes), what="Redis Cluster")
        yield rig


def _replicas_in_sync(nodes: list[RedisNode]) -> bool:
    infos = [node.client().info("replication") for node in nodes]
    replicas = [info for info in infos if info["role"] == "slave"]
    return len(replicas) == len(nodes) // 2 and all(
        info["master_link_status"] == "up" for info in replicas
    )


@dataclass(frozen=True, slots=True)
class SentinelRig:
    master: RedisNode
    replica: RedisNode
    sentinels: list[RedisNode]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{node.port}" for node in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}"

    def master_port(self) -> int | None:
        """The master's port, when every living sentinel names the same one."""
        named = set()
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                address = sentinel.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                assert isinstance(address, list)
                named.add(int(address[1]))
        return named.pop() if len(named) == 1 else None

    def has_failed_over(self) -> bool:
        """Every sentinel names the replica, and it answers as a master."""
        if self.master_port() != self.replica.port:
            return False
        with contextlib.suppress(redis.RedisError):
            return bool(self.replica.client().info("replication")["role"] == "master")
        return False


@contextlib.contextmanager
def redis_sentinel(workdir: Path) -> Iterator[SentinelRig]:
    """A master, its replica, and three sentinels (quorum 2), ready when each sentinel knows the
    replica and the other two sentinels."""
    with _nodes(workdir, [[]]) as (master,):
        replica_options = ["--replicaof", HOST, str(master.port)]
        sentinel_options = [
            "--sentinel",
            f"sentinel monitor {MASTER_NAME} {HOST} {master.port} 2",
            f"sentinel down-after-milliseconds {MASTER_NAME} {SENTINEL_DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} 10000",
        ]
        with _nodes(workdir, [replica_options] + [sentinel_options] * 3) as (replica, *sentinels):
            rig = SentinelRig(master, replica, sentinels)
            wait_until(lambda: _sentinels_ready(rig), what="Redis Sentinel")
            yield rig


def _sentinels_ready(rig: SentinelRig) -> bool:
    try:
        for sentinel in rig.sentinels:
            replicas = sentinel.ask("SENTINEL", "REPLICAS", MASTER_NAME)
            peers = sentinel.ask("SENTINEL", "SENTINELS", MASTER_NAME)
            assert isinstance(replicas, list)
            assert isinstance(peers, list)
            if len(replicas) != 1 or len(peers) != len(rig.sentinels) - 1:
                return False
        link = rig.replica.client().info("replication")["master_link_status"]
    except redis.RedisError:
        return False
    return bool(link == "up") and rig.master_port() == rig.master.port
