from crewyard.core.asyncapi import document
from crewyard.core.events import PAYLOAD_TYPES


def test_every_event_type_has_a_channel_and_a_payload_schema():
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    for name, cls in PAYLOAD_TYPES.items():
        channel = doc["channels"][name.replace(".", "_")]
        assert f".{cls.AGGREGATE}." in channel["address"] and channel["address"].endswith(f".{name}")
        assert cls.__name__ in doc["components"]["schemas"]
    assert doc["components"]["schemas"]["RunFailed"]["required"] == ["error_message"]
