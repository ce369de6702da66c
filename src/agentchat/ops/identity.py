"""doctor's checks of agent identity (schema version 7): the registry against the roles.

- ``agent_role``: a registered agent whose login role is missing where it was added (it cannot
  log in; elsewhere its role need not exist: an agent's role lives where the agent lives);
- ``agent_rights``: an agent role (a member of the group ``agentchat_agent``, or a role the
  registry maps) holding more than an agent's rights (docs/identity.md): a write on
  agent_chat, a read of agentchat_settings, superuser, CREATEROLE, BYPASSRLS, membership of
  another role, ...;
- ``chat_senders``: senders in agent_chat that the registry does not know (only when agents are
  registered; degraded when one wrote after the first agent was registered).

:func:`look` reads one database's :class:`IdentityFacts` (nothing when it has no registry or
this role may not read it); :func:`judge_identity` is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from psycopg import sql

from agentchat import _db, errors
from agentchat.ops.judge import Check, Verdict
from agentchat.sql import queries

#: the group role that holds an agent's rights (agentchat.identity.GROUP)
GROUP = "agentchat_agent"
#: what an agent may do to the public schema's tables (everything else is too much)
AGENT_TABLE_RIGHTS: dict[str, frozenset[str]] = {
    "agent_chat": frozenset({"SELECT"}),
    "memory_embeddings": frozenset({"SELECT"}),
    "agentchat_agents": frozenset({"SELECT"}),
    "agent_chat_processed": frozenset({"SELECT", "INSERT", "UPDATE"}),
}
#: unknown senders doctor names
SENDERS_SHOWN = 5


@dataclass(frozen=True)
class RegisteredAgent:
    name: str
    role: str
    node: int | None
    role_exists: bool


@dataclass(frozen=True)
class TableRight:
    """A privilege an agent role holds on a table, and who holds it (the role, the group,
    ``PUBLIC``, or '' for another way: a membership, ownership, a column grant)."""

    table: str
    privilege: str
    holder: str


@dataclass(frozen=True)
class AgentRole:
    """One agent role's rights that matter."""

    role: str
    superuser: bool = False
    createrole: bool = False
    createdb: bool = False
    replication: bool = False
    bypassrls: bool = False
    member_of: tuple[str, ...] = ()
    table_rights: tuple[TableRight, ...] = ()
    sequences_set: tuple[str, ...] = ()
    schema_create: bool = False
    database_create: bool = False


@dataclass(frozen=True)
class UnknownSender:
    sender: str
    messages: int
    last: datetime
    #: wrote after the first agent was registered
    since_registry: bool


@dataclass
class IdentityFacts:
    """One database's registry, agent roles and the chat's unknown senders."""

    node: int | None = None
    agents: list[RegisteredAgent] = field(default_factory=list)
    roles: list[AgentRole] = field(default_factory=list)
    senders: list[UnknownSender] = field(default_factory=list)
    #: how many unknown senders there are in all (``senders`` holds the first few)
    sender_count: int = 0


# -- facts -------------------------------------------------------------------------------------


def look(conninfo: str) -> IdentityFacts | None:
    """Read one database's :class:`IdentityFacts`; None when it has no registry (schema before
    7) or this role may not read it."""
    with _db.connection(conninfo) as conn:
        return read(conn)


def read(conn: _db.Connection) -> IdentityFacts | None:
    """:func:`look` on an open connection."""
    with _db.wrap_errors():
        row = conn.execute(queries["registry_readable"]).fetchone()
        if not row or not row[0]:
            return None
        facts = IdentityFacts()
        for name, role, node, exists, here in conn.execute(queries["agent_registry_roles"]):
            facts.node = here
            facts.agents.append(RegisteredAgent(name, role, node, bool(exists)))
        mapped = [a.role for a in facts.agents]
        for r in conn.execute(queries["agent_role_rights"], {"group": GROUP, "mapped": mapped}):
            super_, createrole, createdb, replication, bypassrls = (bool(v) for v in r[1:6])
            facts.roles.append(
                AgentRole(
                    r[0],
                    superuser=super_,
                    createrole=createrole,
                    createdb=createdb,
                    replication=replication,
                    bypassrls=bypassrls,
                    member_of=tuple(r[6]),
                    table_rights=tuple(TableRight(str(t), str(p), str(h)) for t, p, h in r[7]),
                    sequences_set=tuple(r[8]),
                    schema_create=bool(r[9]),
                    database_create=bool(r[10]),
                )
            )
        if facts.agents:
            rows = conn.execute(queries["agent_unknown_senders"], {"limit": SENDERS_SHOWN})
            for sender, count, last, since, total in rows:
                facts.senders.append(UnknownSender(sender, int(count), last, bool(since)))
                facts.sender_count = int(total)
    return facts


# -- judgement ---------------------------------------------------------------------------------


def judge_identity(db: str, facts: IdentityFacts) -> list[Check]:
    """The identity checks of one database (see the module's docstring)."""
    checks = judge_agent_roles(db, facts)
    checks += [judge_rights(db, role) for role in facts.roles]
    if facts.agents:
        checks.append(judge_senders(db, facts))
    return checks


def judge_agent_roles(db: str, facts: IdentityFacts) -> list[Check]:
    """A registered agent whose role is missing where it lives: broken (it cannot log in)."""
    if not facts.agents:
        return []
    here = [a for a in facts.agents if a.node is None or a.node == facts.node]
    missing = [a for a in here if not a.role_exists]
    checks = [
        Check(
            db,
            "agent_role",
            Verdict.BROKEN,
            f"agent {a.name} is registered here with role {a.role}, which does not exist:"
            " it cannot log in",
            f"agentchat agent remove {a.name}, then agentchat agent add {a.name} (a new role"
            " and password)",
            subject=a.name,
        )
        for a in missing
    ]
    if not missing:
        elsewhere = len(facts.agents) - len(here)
        other = f" ({elsewhere} added on other nodes)" if elsewhere else ""
        noun = "agent" if len(facts.agents) == 1 else "agents"
        detail = f"{len(facts.agents)} {noun} registered{other}; their roles here exist"
        checks.append(Check(db, "agent_role", Verdict.OK, detail))
    return checks


def excess(role: AgentRole) -> list[str]:
    """What *role* holds beyond an agent's rights, one phrase each."""
    found = [
        attr
        for attr, held in (
            ("SUPERUSER", role.superuser),
            ("CREATEROLE", role.createrole),
            ("CREATEDB", role.createdb),
            ("REPLICATION", role.replication),
            ("BYPASSRLS", role.bypassrls),
        )
        if held
    ]
    found += [f"member of {g}" for g in role.member_of]
    found += [f"{r.privilege} on {r.table}{_held(role, r)}" for r in too_much(role)]
    found += [f"UPDATE on sequence {s} (setval)" for s in role.sequences_set]
    found += ["CREATE on schema public"] if role.schema_create else []
    found += ["CREATE on the database"] if role.database_create else []
    return found


def _held(role: AgentRole, right: TableRight) -> str:
    if right.holder == role.role:
        return ""
    if not right.holder:
        return " (through another role, ownership or a column grant)"
    return f" (held by {right.holder})"


def too_much(role: AgentRole) -> list[TableRight]:
    """The table rights *role* holds beyond :data:`AGENT_TABLE_RIGHTS`."""
    return [
        r
        for r in role.table_rights
        if r.privilege not in AGENT_TABLE_RIGHTS.get(r.table, frozenset())
    ]


def repair_sql(role: AgentRole) -> str:
    """The statements that take the extra rights away (advice; run as a superuser)."""
    name = _ident(role.role)
    steps: list[str] = []
    attrs = [
        f"NO{attr}"
        for attr, held in (
            ("SUPERUSER", role.superuser),
            ("CREATEROLE", role.createrole),
            ("CREATEDB", role.createdb),
            ("REPLICATION", role.replication),
            ("BYPASSRLS", role.bypassrls),
        )
        if held
    ]
    if attrs:
        steps.append(f"ALTER ROLE {name} {' '.join(attrs)};")
    steps += [f"REVOKE {_ident(g)} FROM {name};" for g in role.member_of]
    by_holder: dict[tuple[str, str], list[str]] = {}
    for r in too_much(role):
        holder = r.holder or role.role
        by_holder.setdefault((r.table, holder), []).append(r.privilege)
    for (table, holder), privileges in by_holder.items():
        who = "PUBLIC" if holder == "PUBLIC" else _ident(holder)
        steps.append(f"REVOKE {', '.join(privileges)} ON public.{_ident(table)} FROM {who};")
    steps += [f"REVOKE UPDATE ON SEQUENCE public.{_ident(s)} FROM {name};"
              for s in role.sequences_set]  # fmt: skip
    if role.schema_create:
        steps.append(f"REVOKE CREATE ON SCHEMA public FROM {name}, PUBLIC;")
    if role.database_create:
        steps.append(f"REVOKE CREATE ON DATABASE <this database> FROM {name}, PUBLIC;")
    return " ".join(steps)


def judge_rights(db: str, role: AgentRole) -> Check:
    """An agent role with more than an agent's rights: broken (it can escape its identity)."""
    extra = excess(role)
    if not extra:
        return Check(db, "agent_rights", Verdict.OK, f"{role.role} holds an agent's rights only",
                     subject=role.role)  # fmt: skip
    return Check(
        db,
        "agent_rights",
        Verdict.BROKEN,
        f"agent role {role.role} holds more than an agent needs: {'; '.join(extra)}",
        f"as a superuser: {repair_sql(role)}",
        subject=role.role,
    )


def judge_senders(db: str, facts: IdentityFacts) -> Check:
    """Senders in agent_chat that the registry does not know: degraded when one of them wrote
    after the first agent was registered (impersonation, or an agent not registered yet)."""
    if not facts.senders:
        return Check(db, "chat_senders", Verdict.OK, "every sender in agent_chat is registered")
    shown = ", ".join(f"{s.sender} ({s.messages})" for s in facts.senders)
    more = facts.sender_count - len(facts.senders)
    names = shown + (f" and {more} more" if more > 0 else "")
    recent = [s for s in facts.senders if s.since_registry]
    if not recent:
        return Check(
            db,
            "chat_senders",
            Verdict.OK,
            f"{facts.sender_count} senders in agent_chat are not registered agents ({names}),"
            " all from before the first agent was registered",
            subject=str(facts.sender_count),
        )
    return Check(
        db,
        "chat_senders",
        Verdict.DEGRADED,
        f"{facts.sender_count} senders in agent_chat are not registered agents ({names});"
        f" {recent[0].sender} wrote at {recent[0].last:%Y-%m-%d %H:%M}, after the first agent"
        " was registered: a role that is no agent's sent as that name",
        "agentchat agent add NAME for each real agent (then it connects as its own role); a"
        " role that may INSERT into agent_chat or run send_agent_message as someone else is"
        " not an agent's: revoke that right (docs/identity.md)",
        subject=str(facts.sender_count),
    )


def _ident(name: str) -> str:
    return sql.Identifier(name).as_string()


def checks_for(db: str, conninfo: str) -> list[Check]:
    """:func:`look` and :func:`judge_identity` for doctor; an error reading is a check too."""
    try:
        facts = look(conninfo)
    except errors.AgentchatError as exc:
        return [Check(db, "agent_identity", Verdict.DEGRADED,
                      f"cannot read the agents' registry and roles: {exc.message}",
                      "run doctor as the database's owner or a superuser")]  # fmt: skip
    return [] if facts is None else judge_identity(db, facts)


__all__ = [
    "AGENT_TABLE_RIGHTS",
    "AgentRole",
    "IdentityFacts",
    "RegisteredAgent",
    "TableRight",
    "UnknownSender",
    "checks_for",
    "excess",
    "judge_identity",
    "look",
    "read",
    "repair_sql",
]
