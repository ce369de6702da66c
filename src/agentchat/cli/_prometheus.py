"""status in the Prometheus text exposition format (for node_exporter's textfile collector)."""

from __future__ import annotations

from collections.abc import Iterable

from agentchat._db import conninfo_params
from agentchat.ops.report import Report

_HELP = {
    "agentchat_up": ("gauge", "1 if the database answered"),
    "agentchat_verdict": ("gauge", "worst check: 0 ok, 1 degraded, 2 broken"),
    "agentchat_schema_version": ("gauge", "applied agentchat schema version"),
    "agentchat_trigger_ok": ("gauge", "1 if the trigger's mode matches the policy"),
    "agentchat_subscription_enabled": ("gauge", "1 if the subscription is enabled"),
    "agentchat_subscription_worker_running": ("gauge", "1 if its apply worker runs"),
    "agentchat_subscription_tables_ready": ("gauge", "tables in state r (ready)"),
    "agentchat_subscription_tables": ("gauge", "tables the subscription carries"),
    "agentchat_subscription_apply_errors_total": ("counter", "apply errors since stats reset"),
    "agentchat_subscription_sync_errors_total": ("counter", "sync errors since stats reset"),
    "agentchat_subscription_last_message_timestamp_seconds": (
        "gauge",
        "when the apply worker last heard from the source",
    ),
    "agentchat_slot_active": ("gauge", "1 if a walsender uses the slot"),
    "agentchat_slot_retained_bytes": ("gauge", "WAL the slot holds back"),
    "agentchat_slot_lag_bytes": ("gauge", "WAL not yet confirmed by the subscriber"),
    "agentchat_embeddings_rows": ("gauge", "memory_embeddings rows with a vector"),
    "agentchat_embeddings_queued": ("gauge", "memory_embeddings rows waiting for a vector"),
    "agentchat_embeddings_failing": ("gauge", "queued rows whose embedding failed at least once"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _samples(report: Report) -> Iterable[tuple[str, str, float]]:
    for facts in report.databases:
        mine = [c.verdict for c in report.checks if c.database == facts.name]
        params = conninfo_params(facts.resolved or facts.conninfo)
        where = {
            "database": params.get("dbname", ""),
            "server": f"{params.get('host', 'local')}:{params.get('port', '')}",
        }
        db_labels = _labels(**where)
        yield "agentchat_up", db_labels, float(facts.reachable)
        yield "agentchat_verdict", db_labels, float(max(mine, default=0))
        if not facts.reachable:
            continue
        yield "agentchat_schema_version", db_labels, float(facts.schema_version)
        for t in facts.triggers:
            labels = _labels(**where, trigger=t.trigger, mode=t.mode_name)
            yield "agentchat_trigger_ok", labels, float(t.ok)
        for s in facts.subscriptions:
            labels = _labels(**where, subscription=s.name)
            yield "agentchat_subscription_enabled", labels, float(s.enabled)
            yield "agentchat_subscription_worker_running", labels, float(s.worker_pid is not None)
            yield "agentchat_subscription_tables_ready", labels, float(s.tables_ready)
            yield "agentchat_subscription_tables", labels, float(len(s.tables))
            yield "agentchat_subscription_apply_errors_total", labels, float(s.apply_errors)
            yield "agentchat_subscription_sync_errors_total", labels, float(s.sync_errors)
            if s.last_message is not None:
                yield (
                    "agentchat_subscription_last_message_timestamp_seconds",
                    labels,
                    s.last_message.timestamp(),
                )
        for slot in facts.slots:
            labels = _labels(**where, slot=slot.name)
            yield "agentchat_slot_active", labels, float(slot.active)
            yield "agentchat_slot_retained_bytes", labels, float(slot.retained_bytes or 0)
            yield "agentchat_slot_lag_bytes", labels, float(slot.lag_bytes or 0)
        if facts.embeddings is not None:
            labels = _labels(**where, mode=facts.embeddings.mode.value)
            yield "agentchat_embeddings_rows", labels, float(facts.embeddings.embedded)
            yield "agentchat_embeddings_queued", labels, float(facts.embeddings.queued)
            yield "agentchat_embeddings_failing", labels, float(facts.embeddings.failing)


def render(report: Report) -> str:
    by_metric: dict[str, list[str]] = {}
    for metric, labels, value in _samples(report):
        text = str(int(value)) if value.is_integer() else repr(value)
        by_metric.setdefault(metric, []).append(f"{metric}{labels} {text}")
    lines = []
    for metric, (kind, text) in _HELP.items():
        if metric in by_metric:
            lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}", *by_metric[metric]]
    return "\n".join(lines) + "\n"
