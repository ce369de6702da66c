"""The benchmarks' lab: embedded clusters in a temporary directory, gone when the run ends.

    with Lab(version=18) as lab:
        source = lab.database("hub")                       # installed, on cluster 0
        replica = lab.replica(source, "graybeard")         # one-way, on cluster 0
        far = lab.replica(source, "sage", cluster=1)       # another cluster, started on demand
        with lab.scope():                                  # what is made inside goes at its end
            ...

Clusters are :class:`agentchat.server.Cluster` s (ephemeral: ``fsync=off``, like the suite's),
started on first use with room for the fan-out benchmark: 80 walsenders and slots on each, 40
logical replication workers and, on PostgreSQL 18, 64 active replication origins (each
subscription holds one on its subscriber). A cluster takes at most :data:`REPLICAS_PER_CLUSTER`
subscriptions comfortably; spread wider fan-outs over several clusters.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from psycopg import sql

from agentchat import _db, install, replication
from agentchat.server import DEFAULT_VERSION, Cluster
from agentchat.sql import queries

#: a benchmark's progress lines (shown on stderr when it is a terminal)
Progress = Callable[[str], None]

#: subscriptions one lab cluster takes with room to spare (apply workers, origins, sync workers)
REPLICAS_PER_CLUSTER = 20

#: settings of every lab cluster (on top of the server's own; see the module docstring)
LAB_SETTINGS: dict[str, str] = {
    "max_replication_slots": "80",
    "max_wal_senders": "80",
    "max_logical_replication_workers": "40",
    "max_worker_processes": "64",
    "max_connections": "300",
    "wal_retrieve_retry_interval": "1s",
    "track_commit_timestamp": "on",  # when a row was applied on a replica (fan-out)
    # pgvector's sizing advice for the search benchmark's 100,000-vector HNSW index (about 200
    # MB): the index in shared_buffers (with the default 128 MB every search read its pages
    # from the OS cache: p50 16.5 ms, p99 22.3 ms), and room to build it in memory
    "shared_buffers": "512MB",
    "maintenance_work_mem": "512MB",
}
#: PostgreSQL 18's limit on replication origins (the server sets 32 at init: raised after it)
ORIGINS_SETTING = "max_active_replication_origins = 64\n"

TEMPLATE = "agentchat_bench_template"


def quiet(line: str) -> None:
    """A :data:`Progress` that shows nothing."""


class Lab:
    """Clusters, databases and replicas for one benchmark run (see the module docstring)."""

    def __init__(self, version: int = DEFAULT_VERSION, *, progress: Progress = quiet) -> None:
        self.version = version
        self.progress = progress
        self.root = Path(tempfile.mkdtemp(prefix="agentchat-bench-"))
        self.root.chmod(0o755)  # our fresh directory: the server's user must traverse it
        self._clusters: dict[int, Cluster] = {}
        self._made: list[list[tuple[int, str]]] = [[]]  # (cluster, database) per open scope

    # -- clusters ----------------------------------------------------------------------------

    def cluster(self, index: int = 0) -> Cluster:
        """Cluster number *index*, initialised and started on first use."""
        if index not in self._clusters:
            self.progress(f"starting cluster {index} (PostgreSQL {self.version})")
            cluster = Cluster(
                self.root / f"c{index}", version=self.version, ephemeral=True,
                settings=LAB_SETTINGS,
            )  # fmt: skip
            cluster.init()
            if self.version >= 18:  # a later line wins over the one written at init
                with (cluster.data / "postgresql.conf").open("a") as conf:
                    conf.write(ORIGINS_SETTING)
            cluster.start()
            self._clusters[index] = cluster
        return self._clusters[index]

    # -- databases ---------------------------------------------------------------------------

    def _template(self, cluster: Cluster) -> None:
        with _db.connection(cluster.conninfo()) as admin:
            if admin.execute(queries["bench_database_exists"], (TEMPLATE,)).fetchone():
                return
        install.install(cluster.conninfo(TEMPLATE))
        with _db.connection(cluster.conninfo()) as admin:
            admin.execute(queries.compose("bench_seal_template", database=sql.Identifier(TEMPLATE)))

    def database(self, name: str, cluster: int = 0) -> str:
        """A new database *name* with agentchat installed (a plain node); its conninfo."""
        where = self.cluster(cluster)
        _db.validate_identifier(name, "database name")
        self._template(where)
        with _db.connection(where.conninfo()) as admin:
            admin.execute(
                queries.compose(
                    "bench_create_database",
                    database=sql.Identifier(name),
                    template=sql.Identifier(TEMPLATE),
                )
            )
        self._made[-1].append((cluster, name))
        return where.conninfo(name)

    def replica(self, source: str, name: str, cluster: int = 0, *, copy_data: bool = True) -> str:
        """A one-way replica of *source*: database *name* on *cluster*, subscribed and synced
        (``copy_data=False``: only what is written from now on)."""
        target = self.database(name, cluster)
        replication.add(source, target, timeout=300, copy_data=copy_data)
        return target

    def spoke(self, hub: str, name: str, cluster: int = 0) -> str:
        """A two-way spoke below *hub*: database *name* on *cluster*, joined both ways."""
        target = self.database(name, cluster)
        replication.join(hub, target, timeout=300)
        return target

    def _unsubscribe(self, cluster: int, name: str) -> None:
        """Drop the subscriptions of database *name* (their slots stay, inactive: they go with
        their database)."""
        where = self._clusters.get(cluster)
        if where is None:
            return
        with contextlib.suppress(Exception), _db.connection(where.conninfo(name)) as conn:
            for (sub,) in conn.execute(queries["bench_subscriptions"]).fetchall():
                replication.drop_subscription(conn, sub)

    def _drop_database(self, cluster: int, name: str) -> bool:
        where = self._clusters.get(cluster)
        if where is None:
            return True
        with contextlib.suppress(Exception), _db.connection(where.conninfo()) as admin:
            admin.execute(queries.compose("bench_drop_database", database=sql.Identifier(name)))
            return True
        return False

    def drop(self, databases: list[tuple[int, str]]) -> None:
        """Drop *databases* ((cluster, name) each): every subscription among them first, then
        the databases, again while one still serves a walsender that is on its way out (a
        two-way link's slot sits in each of its two databases)."""
        for cluster, name in databases:
            self._unsubscribe(cluster, name)
        left = list(databases)
        for _ in range(20):
            left = [(c, n) for c, n in left if not self._drop_database(c, n)]
            if not left:
                return
            time.sleep(0.25)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Databases made inside are dropped at its end, so a benchmark's walsenders do not
        decode the next benchmark's writes."""
        self._made.append([])
        try:
            yield
        finally:
            self.drop(list(reversed(self._made.pop())))

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop and remove every cluster, and the lab's directory."""
        for cluster in self._clusters.values():
            cluster.destroy()
        self._clusters.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
