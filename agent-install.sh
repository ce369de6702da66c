#!/usr/bin/env sh
# The seed's installer, kept so its documented command works verbatim:
#     ./agent-install.sh --database graybeard_memory
# It is `agentchat install` (same options: --dsn, --no-create, --dry-run, --json); connections
# follow libpq conventions (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSERVICE, ~/.pgpass).
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if [ -x "$here/.venv/bin/agentchat" ]; then
    exec "$here/.venv/bin/agentchat" install "$@"
elif command -v agentchat >/dev/null 2>&1; then
    exec agentchat install "$@"
else
    echo "agent-install.sh: error: agentchat is not installed (run scripts/bootstrap first)" >&2
    exit 1
fi
