from agentchat import install
from tests import helpers


def test_subscriber_detected_same_cluster(hub, db, db2):
    install.install(db)
    install.install(db2)
    helpers.seed_subscribe(db, db2, "agent_chat_from_nova", source_cluster=hub, same_cluster=True)
    report = install.install(db2)
    assert report.role.value == "subscriber"


def test_subscriber_detected_two_clusters(hub, db, remote_db):
    install.install(db)
    install.install(remote_db)
    helpers.seed_subscribe(db, remote_db, "agent_chat_from_nova", source_cluster=hub, same_cluster=False)
    report = install.install(remote_db)
    assert report.role.value == "subscriber"
