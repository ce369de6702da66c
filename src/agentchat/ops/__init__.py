"""Operations: ``status``, ``doctor`` and ``verify`` as checks — facts, judge, report.

- :mod:`agentchat.ops.facts`: what each database says (``gather``), read and never changed;
- :mod:`agentchat.ops.judge`: pure functions from facts to ``Check`` rows (verdict, detail, fix);
- :mod:`agentchat.ops.graph`: the graph of two-way links (each node's number, registry and
  links, read; links, loops, node numbers and delivery, judged);
- :mod:`agentchat.ops.report`: ``status`` and its ``Report`` (the verdict is the exit code);
- :mod:`agentchat.ops.doctor`: the checks that need the source too, and the safe repairs;
- :mod:`agentchat.ops.identity`: doctor's checks of agent identity (the registry of agents
  against the roles and the chat's senders);
- :mod:`agentchat.ops.verify`: a probe message through replication, timed (two-way: from
  every node to every other).
"""
