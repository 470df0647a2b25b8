"""What /health reports: the database, the broker and its workers, the artefact store.

Each part is bounded in time and none holds a resource while waiting on another: the database is
checked with a connection of its own that goes back to the pool at once, the broker from the
cached single-flight probe (`workers.broker_health.BrokerHealth`), the artefact store from the
filesystem.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from backend.services.storage import artefact_store_health
from backend.settings import Settings
from workers.broker_health import BrokerHealth


def database_health(make_session: sessionmaker[Session]) -> dict[str, Any]:
    """{"ok"} after a `select 1`, or {"ok": false, "error"}; the connection is returned at once."""
    try:
        with make_session() as session:
            session.execute(sa.text("select 1"))
    except sa.exc.DBAPIError as exc:
        return {"ok": False, "error": str(exc.orig).splitlines()[0] if exc.orig else str(exc)}
    return {"ok": True}


def broker_health_cache(settings: Settings) -> BrokerHealth:
    return BrokerHealth(
        settings, max_age_s=settings.broker_probe_max_age_s, wait_s=settings.broker_probe_wait_s
    )


def overall(database: dict[str, Any], broker: dict[str, Any], artefacts: dict[str, Any]) -> str:
    """ "ok" when runs can be stored, sent, picked up and written; else "degraded"."""
    ok = database["ok"] and bool(broker.get("ok")) and bool(broker.get("workers")) and artefacts["ok"]
    return "ok" if ok else "degraded"


def artefacts_health(settings: Settings) -> dict[str, Any]:
    return artefact_store_health(settings.artifact_root)
