"""``agentchat demo``: the main job in one command, on an embedded PostgreSQL.

A private cluster with the seed's layout, linked both ways: ``nova_memory`` (the hub),
``graybeard_memory`` and ``sage_memory`` (agent databases, spokes that join it). Each agent
listens and writes on its own database, and replication carries every message to the others,
live and timed; then the trigger table of each database, ``status``, ``verify`` and, with the
embeddings extra, a semantic search on a spoke. It starts from a fresh cluster every time and
removes it at the end, unless ``--keep``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from agentchat import _db, health, nodes, policy, replication, topology
from agentchat import install as installer
from agentchat import server as embedded
from agentchat import verify as verify_mod
from agentchat.cli import _options, _output
from agentchat.cli._conversation import Conversation, Timeline, scripted, wait_for
from agentchat.cli.install import render_triggers
from agentchat.cli.ops import render_status
from agentchat.cli.server import cluster_options, default_data_dir
from agentchat.replication.links import node_of as node_of_id

HUB = "nova_memory"
AGENTS = {"nova": HUB, "graybeard": "graybeard_memory", "sage": "sage_memory"}
#: what each agent answers, by a word in the message it answers (one answer per message, so
#: the conversation, and its ids, are the same on every run)
SCRIPTS = {
    "graybeard": {
        "backup": "On it. The backup volume is full: I am clearing last month's snapshots."
    },
    "sage": {
        "alert": "Done: an alert now fires when a disk is 80% full.",
        "standup": "See you there.",
    },
    "nova": {"snapshots": "Thanks, graybeard. Tell me when the rerun is green."},
}
SCRIPTS["graybeard"]["volume"] = "/srv/backup: the alert should watch that one."
#: who says what to whom, each on its own database; the last one goes from spoke to spoke
EXCHANGE = [
    ("nova", "The nightly backup failed: the disk was full. Can you look at it?", ["graybeard"]),
    ("nova", "Can you add an alert, so we hear of a full disk before the backup does?", ["sage"]),
    ("nova", "Standup moves to 10:30 today.", ["*"]),
    ("sage", "graybeard, which volume holds the backup?", ["graybeard"]),
]
#: a paraphrase of the first message, sharing none of its key words
QUERY = "storage ran out so the archive job broke"


def _stage(number: int, title: str) -> None:
    click.echo(f"\n{number}. {title}")


def _line(timeline: Timeline, databases: list[str], numbers: dict[int, int]) -> str:
    """One message's lines; *numbers* gives each message its number in the demo (#1, #2, ...:
    the ids themselves are long, see :func:`_ids`)."""
    numbers.setdefault(timeline.id, len(numbers) + 1)
    to = ", ".join(timeline.to) or "nobody"
    reply = f" (reply to #{numbers[timeline.reply_to]})" if timeline.reply_to else ""
    written = _short(timeline.written_on)
    arrived = {_short(where): ms for where, ms in timeline.arrived.items()}
    reached = ", ".join(
        f"{db} {arrived[db]:.1f} ms" for db in databases if db != written and db in arrived
    )
    heard = ", ".join(
        f"{agent} {timeline.handled[agent]:.1f} ms" for agent in AGENTS if agent in timeline.handled
    )
    return (
        f"   #{numbers[timeline.id]} {timeline.sender} -> {to}{reply}, written on {written}:"
        f" {timeline.text}\n      reached {reached or '-'}; listener of {heard or '-'}"
    )


def _ids(lines: list[Timeline], numbers: dict[int, int], node_of: dict[str, int]) -> str:
    """What the ids are: the first message written on each database, with the node it carries."""
    first: dict[str, Timeline] = {}
    for line in lines:
        first.setdefault(_short(line.written_on), line)
    shown = [
        f"     #{numbers[line.id]} = {line.id}: node {node_of_id(line.id)} ({db})"
        for db, line in first.items()
    ]
    assert all(node_of_id(line.id) == node_of[db] for db, line in first.items())
    return "\n".join(["   each id carries the node that wrote it:", *shown])


def _short(described: str) -> str:
    """``database "x" on socket ...`` -> ``x``."""
    return described.split('"')[1] if described.count('"') >= 2 else described


@click.command()
@cluster_options
@click.option("--keep", is_flag=True, help="Leave the server running and print how to connect.")
@click.option("--no-embeddings", is_flag=True, help="Skip the embeddings stage.")
@_options.quiet
def demo(data_dir: Path | None, name: str, keep: bool, no_embeddings: bool, quiet: bool) -> None:
    """Three agents on three databases, each writing on its own, linked both ways by logical
    replication; then status, verify and a semantic search on a spoke. Runs on a private
    PostgreSQL it starts."""
    began = time.monotonic()
    root = (data_dir or default_data_dir()) / ("demo" if name == "default" else name)
    cluster = embedded.Cluster(root, ephemeral=True)
    if cluster.initialized:
        cluster.destroy()  # the demo's own cluster, left by an earlier --keep: start afresh
    click.echo("agentchat demo: agents on three databases, each writing on its own, linked both"
               " ways by logical replication")  # fmt: skip
    _stage(1, "PostgreSQL")
    cluster.start()
    try:
        _run(cluster, no_embeddings=no_embeddings, quiet=quiet)
    except BaseException:
        if not keep:
            cluster.destroy()
        raise
    if keep:
        click.echo(f"\nserver left running in {cluster.directory}; connect with:")
        for db in dict.fromkeys(AGENTS.values()):
            click.echo(f"  psql '{cluster.uri(db)}'")
        click.echo(
            f"stop it with: agentchat server stop --data-dir {root.parent} --name {root.name}"
        )
    else:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
        click.echo(f"\ndone in {time.monotonic() - began:.1f} s; server stopped and removed")


def _run(cluster: embedded.Cluster, *, no_embeddings: bool, quiet: bool) -> None:
    click.echo(f"   PostgreSQL {cluster.version} in {cluster.directory}, wal_level = logical")
    dsns = {db: cluster.conninfo(db) for db in dict.fromkeys(AGENTS.values())}
    hub = dsns[HUB]

    _stage(2, "Databases: agentchat installed into each")
    for db, dsn in dsns.items():
        done = installer.install(dsn)
        click.echo(f"   {db:<17} schema version {done.schema_version}, role {done.kind.value}")

    _stage(3, f"Replication, both ways: each agent database joins the hub, {HUB}")
    topo = topology.load(cluster.directory / "agentchat.toml")
    with _output.progress(quiet) as progress:
        for db, dsn in dsns.items():
            if db == HUB:
                continue
            joined = replication.join(hub, dsn, topology=topo, timeout=60, progress=progress)
            click.echo(f"   {db} joined {HUB}: links {', '.join(joined.links)}")
    node_of: dict[str, int] = {}
    for db, dsn in dsns.items():
        with _db.connection(dsn) as conn:
            facts = policy.read_kind(conn)
            node_of[db] = nodes.number(conn)
        click.echo(f"   {db:<17} role {facts.kind.value}, node {node_of[db]}")

    _stage(4, "Agents talk: each agent listens, and writes, on its own database")
    click.echo("   (ms after the message was committed: when it reached each other database, and")
    click.echo("   when each addressee's listener was notified and handed it to the agent)")
    homes = {agent: dsns[db] for agent, db in AGENTS.items()}
    scripts = {agent: scripted(answers) for agent, answers in SCRIPTS.items()}
    numbers: dict[int, int] = {}
    said: list[Timeline] = []
    with Conversation(homes, scripts) as talk:
        for sender, text, to in EXCHANGE:
            for timeline in talk.say(sender, text, to=to):
                click.echo(_line(timeline, list(dsns), numbers))
                said.append(timeline)
    click.echo(_ids(said, numbers, node_of))

    _stage(5, "Triggers: the seed's status query, with the policy's verdict")
    for db, dsn in dsns.items():
        with _db.connection(dsn) as conn:
            facts = policy.read_kind(conn)
            rows = policy.trigger_report(conn, facts)
        click.echo(f"   {db}")
        click.echo("\n".join("   " + line for line in render_triggers(rows, facts).splitlines()))

    _stage(6, "Status of the topology (agentchat status)")
    report = health.status(list(dsns.values()))
    click.echo(
        "\n".join("   " + line for line in render_status(report, verbose=False).splitlines())
    )

    _stage(7, "Verify: a probe from each database to each other one (agentchat verify)")
    for source, source_dsn in dsns.items():
        for db, dsn in dsns.items():
            if db == source:
                continue
            probe = verify_mod.verify(source_dsn, dsn)
            state = "ok" if probe.ok else f"FAILED: {probe.error or 'see agentchat verify'}"
            click.echo(f"   {source} -> {db}: arrived in {probe.arrival_ms or 0:.1f} ms, NOTIFY"
                       f" in {probe.notify_ms or 0:.1f} ms, {probe.embedding_rows} embedding"
                       f" row(s) [{state}]")  # fmt: skip

    _stage(8, "Embeddings: computed where each message was written, carried by the same links")
    if no_embeddings:
        click.echo("   skipped (--no-embeddings)")
        return
    _embeddings(dsns, numbers, quiet=quiet)


def _embeddings(dsns: dict[str, str], numbers: dict[int, int], *, quiet: bool) -> None:
    """Each database's worker embeds the messages written there (*numbers*: the demo's
    numbers of the messages, by id); then a search on a spoke."""
    from agentchat import errors
    from agentchat.embeddings import LocalEmbedder, Worker, search
    from agentchat.sql import queries

    try:
        embedder = LocalEmbedder()
    except errors.ConfigError as exc:
        click.echo(f"   skipped: {exc}")
        return
    total = len(numbers)
    # every node runs its own worker; each embeds the messages written on it
    with _output.progress(quiet) as progress:
        for db, dsn in dsns.items():
            stats = Worker(
                dsn, embedder, progress=lambda s: progress("embedding", f"{s.embedded} rows")
            ).run(once=True)
            click.echo(f"   {db}: embedded {stats.embedded} messages ({embedder.model})")
    for db, dsn in dsns.items():

        def arrived(dsn: str = dsn) -> bool:
            with _db.connection(dsn) as conn:
                row = conn.execute(queries["embedding_facts"]).fetchone()
            return row is not None and int(row[0]) >= total

        wait_for(arrived, 30, f"the embeddings to reach {db}")
    click.echo(f"   each database holds all {total} embeddings")
    spoke = list(dsns)[-1]
    click.echo(f'   search on {spoke} for "{QUERY}":')
    for hit in search(dsns[spoke], QUERY, embedder, limit=3):
        msg = hit.message
        click.echo(f"     {hit.score:.3f}  #{numbers.get(msg.id, msg.id)} {msg.sender}:"
                   f" {msg.message}")  # fmt: skip
