import sys

import pytest

pytest.importorskip("fastapi")


def test_without_the_studio_extra_it_says_how_to_install_it(tryon, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    run = tryon("studio")
    assert run.code == 2
    assert run.stderr.strip() == ("tryon: error: tryon studio needs uvicorn: pip install 'tryon[studio]' "
                                  "(or pip install -e '.[studio]' in a checkout)")


@pytest.mark.parametrize("args, message", [
    (("--token", "short"), "--token must be at least 16 characters"),
    (("--fps", "0"), "--fps"),
    (("--max-seconds", "0"), "--max-seconds must be more than 0"),
    (("--size", "12"), "invalid size '12'"),
])
def test_bad_options_are_one_line_and_exit_2_before_serving(tiny_checkpoint, tryon, args, message):
    run = tryon("studio", "--model", tiny_checkpoint, "--port", "0", *args)
    assert run.code == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_an_input_error(tiny_checkpoint, tryon):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        run = tryon("studio", "--model", tiny_checkpoint, "--port", port)
    assert run.code == 2 and run.stderr.startswith(f"tryon: error: cannot listen on 127.0.0.1:{port} (")
    assert len(run.stderr.strip().splitlines()) == 1  # before the model is loaded


def test_any_other_host_gets_a_token_made_up_and_printed_once(monkeypatch):
    from engine.api.studio.server import access_token, is_loopback

    assert access_token("127.0.0.1", None) is None and access_token("::1", None) is None
    assert is_loopback("localhost") and not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    made = access_token("0.0.0.0", None)
    assert len(made) >= 24 and made != access_token("0.0.0.0", None)
    assert access_token("0.0.0.0", "given-token-of-length") == "given-token-of-length"
