"""What the two-way proofs (tests/integration/test_two_way_proofs.py) run beside the clusters.

- :class:`Databases`: installed databases made for one test, on the suite's clusters or on a
  cluster of the test's own (:meth:`Databases.cluster`: one the test may stop and start), all
  dropped at the end.
- :class:`Burst`: a thread posting exactly *count* numbered messages at one database through
  the library's send path, each addressed as *to* says.
- The checks every proof makes on every database: :func:`ids`, :func:`errors_of`,
  :func:`duplicates`, :func:`dangling_replies`, :func:`converged`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import psycopg

from agentchat import install, messaging
from agentchat.server import Cluster
from tests import helpers
from tests.conftest import TEMPLATE, TEST_SETTINGS


class Databases:
    """Installed databases for one test; :meth:`drop` removes them (and the test's clusters)."""

    def __init__(self, root: Path, version: int) -> None:
        self.root, self.version = root, version
        self._made: list[tuple[Cluster, str]] = []
        self._clusters: list[Cluster] = []

    def new(self, cluster: Cluster, *, tcp: bool = False, template: str | None = TEMPLATE) -> str:
        """A fresh database on *cluster*: a copy of its installed template (the suite's clusters
        have one), or installed here (*template* None). Its conninfo: over the Unix socket, or
        (*tcp*) over TCP with the cluster's superuser password (``remote.tcp_conninfo``)."""
        name = f"t_{uuid.uuid4().hex[:10]}"
        helpers.create_database(cluster, name, template)
        self._made.append((cluster, name))
        conninfo = cluster.tcp_conninfo(name) if tcp else cluster.conninfo(name)
        if template is None:
            install.install(conninfo)
        return conninfo

    def cluster(self, name: str) -> Cluster:
        """A running cluster of this test's own (same version and settings as the suite's)."""
        cluster = Cluster(
            self.root / f"{name}-{uuid.uuid4().hex[:6]}",
            version=self.version,
            ephemeral=True,
            settings=TEST_SETTINGS,
        )
        cluster.start()
        self._clusters.append(cluster)
        return cluster

    def drop(self) -> None:
        for cluster, name in reversed(self._made):
            if cluster.is_running():
                helpers.drop_database(cluster, name)
        for cluster in self._clusters:
            cluster.destroy()


class Burst:
    """Post ``<sender> n=<i>`` for i in 0..count-1 at *dsn*, addressed to ``to(i)``, *pause*
    seconds apart, in a thread; ``sent`` holds the ids the database returned."""

    def __init__(
        self,
        dsn: str,
        sender: str,
        count: int,
        to: Callable[[int], list[str]],
        pause: float = 0.0,
    ) -> None:
        self.dsn, self.sender, self.count, self.to, self.pause = dsn, sender, count, to, pause
        self.sent: list[int] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"burst-{sender}", daemon=True)

    def start(self) -> Burst:
        self._thread.start()
        return self

    def join(self, timeout: float = 120) -> list[int]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.sender} did not finish"
        assert self.error is None, f"{self.sender} failed: {self.error!r}"
        return self.sent

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                for number in range(self.count):
                    text = f"{self.sender} n={number}"
                    params = messaging.send_params(self.sender, text, self.to(number))
                    self.sent.append(messaging.send_on(conn, params))
                    if self.pause:
                        self._stop.wait(self.pause)
        except BaseException as exc:  # reported by join(), which fails the test
            self.error = exc


def ids(dsn: str) -> set[int]:
    return {int(str(r[0])) for r in helpers.execute(dsn, "SELECT id FROM agent_chat")}


def count(dsn: str, query: str = "SELECT count(*) FROM agent_chat") -> int:
    [(n,)] = helpers.execute(dsn, query)
    return int(str(n))


def errors_of(dsn: str) -> list[tuple[str, int, int]]:
    """(subscription, apply errors, sync errors) of every subscription of *dsn*'s database
    that had an error (pg_stat_subscription_stats is the cluster's: joined to this database's
    subscriptions)."""
    rows = helpers.execute(
        dsn,
        "SELECT s.subname, st.apply_error_count, st.sync_error_count"
        " FROM pg_subscription s JOIN pg_stat_subscription_stats st ON st.subid = s.oid"
        " WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        "   AND st.apply_error_count + st.sync_error_count > 0",
    )
    return [(str(n), int(str(a)), int(str(s))) for n, a, s in rows]


def subscriptions(dsn: str) -> list[str]:
    rows = helpers.execute(
        dsn,
        "SELECT subname FROM pg_subscription"
        " WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " ORDER BY 1",
    )
    return [str(r[0]) for r in rows]


def duplicates(dsn: str) -> list[tuple[object, ...]]:
    """Messages stored twice under different ids (same sender and text), and replies given
    twice to one message by one sender: each must be empty."""
    return helpers.execute(
        dsn,
        "SELECT 'message', sender, message, count(*) FROM agent_chat"
        " GROUP BY sender, message HAVING count(*) > 1"
        " UNION ALL SELECT 'reply', sender, reply_to::text, count(*) FROM agent_chat"
        " WHERE reply_to IS NOT NULL GROUP BY sender, reply_to HAVING count(*) > 1",
    )


def dangling_replies(dsn: str) -> list[int]:
    """Replies in *dsn*'s database whose reply_to is not there: must be empty."""
    rows = helpers.execute(
        dsn,
        "SELECT r.id FROM agent_chat r LEFT JOIN agent_chat m ON m.id = r.reply_to"
        " WHERE r.reply_to IS NOT NULL AND m.id IS NULL",
    )
    return [int(str(r[0])) for r in rows]


def replies(dsn: str) -> dict[int, int]:
    """{reply id: the id it answers} for every reply in *dsn*'s database."""
    rows = helpers.execute(dsn, "SELECT id, reply_to FROM agent_chat WHERE reply_to IS NOT NULL")
    return {int(str(i)): int(str(r)) for i, r in rows}


def converged(dsns: Iterable[str], total: int) -> bool:
    """Every database holds *total* messages, and the same ones."""
    sets = [ids(d) for d in dsns]
    return all(len(s) == total for s in sets) and all(s == sets[0] for s in sets)


def published_tables(dsn: str) -> set[str]:
    """Every table some publication of *dsn*'s database carries."""
    rows = helpers.execute(dsn, "SELECT DISTINCT tablename FROM pg_publication_tables")
    return {str(r[0]) for r in rows}


def node_setting(dsn: str) -> int:
    [(value,)] = helpers.execute(dsn, "SELECT value FROM agentchat_settings WHERE key = 'node'")
    return int(str(value))


def set_node_by_hand(dsn: str, number: int) -> None:
    """What an operator (or a restored copy of another database) could leave behind."""
    helpers.execute(
        dsn, "UPDATE agentchat_settings SET value = %s WHERE key = 'node'", (str(number),)
    )
