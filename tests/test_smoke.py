import octopus


def test_set_get_roundtrip() -> None:
    with octopus.Engine() as e:
        r = e.set("a { x: 1 }")
        assert e.get("a") == r
