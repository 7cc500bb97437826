"""No secret (password, key passphrase) in any output: the command line's failure paths with
--verbose, its results files, describe, repr, and the Python API's logs at DEBUG."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from brokers import MosquittoBroker
from certs import KEY_PASSPHRASE, make_certs, tls_listeners
from clirun import run_cli
from connector.mqtt.broker import free_port
from connector.harness.runtime import Runtime
from connector.sdk.errors import ConnectorError

USER, PASSWORD = "bob", "Bob-Secret-Pw-82d4e1"
WRONG_PASSWORD = "Wrong-Secret-Pw-19af77"
WRONG_PASSPHRASE = "Wrong-Passphrase-c3d2"
SECRETS = (PASSWORD, WRONG_PASSWORD, KEY_PASSPHRASE, WRONG_PASSPHRASE)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, mosquitto_factory: Callable[..., MosquittoBroker]) -> dict[str, Any]:
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    ports, extra = tls_listeners(certs)
    broker = mosquitto_factory(passwords={USER: PASSWORD}, acl=f"user {USER}\ntopic readwrite allowed/#\n", extra=extra)
    folder = certs["ca"].parent
    return {"broker": broker, "ports": ports, "dir": folder,
            "mtls": {"host": "127.0.0.1", "port": ports["mtls"], "username": USER, "password": PASSWORD,
                     "ca_file": str(folder / "ca.pem"),
                     "cert_file": str(folder / "client.pem"), "key_file": str(folder / "client-enc.key")}}


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}: {text!r}"


def write(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value))
    return str(path)


def test_failure_paths_with_verbose_never_show_a_secret(setup: dict[str, Any], tmp_path: Path) -> None:
    port = str(setup["broker"].port)
    mtls = setup["mtls"]
    password_file = tmp_path / "password"
    password_file.write_text(WRONG_PASSWORD + "\n")
    plain = ["--host", "127.0.0.1", "--port", port, "--username", USER]
    tls_flags = ["--host", "127.0.0.1", "--port", str(mtls["port"]), "--username", USER, "--password", PASSWORD,
                 "--ca-file", mtls["ca_file"],
                 "--cert-file", mtls["cert_file"], "--key-file", mtls["key_file"]]
    send = ["send", "--topic", "allowed/s", "--qos", "1", "--message", "m"]
    bad_config = write(tmp_path / "bad.json", {"port": "not a port", "password": WRONG_PASSWORD,
                                               "key_password": WRONG_PASSPHRASE, "colour": PASSWORD})
    op = write(tmp_path / "op.json", {"action": "send", "topic": "allowed/s", "qos": 1})
    conn_wrong = write(tmp_path / "wrong.json", {"host": "127.0.0.1", "port": int(port), "username": USER,
                                                 "password": WRONG_PASSWORD})
    conn_bad_ca = write(tmp_path / "bad-ca.json", {**mtls, "ca_file": str(setup["dir"] / "wrong-ca.pem"),
                                                   "key_password": KEY_PASSPHRASE})
    runs = {
        "wrong password (flag)": (3, run_cli(*send, *plain, "--password", WRONG_PASSWORD, "--verbose")),
        "wrong password (file)": (3, run_cli("check", *plain, "--password-file", str(password_file), "--verbose")),
        "wrong password (env), listen": (3, run_cli("listen", "--topic", "allowed/#", "--timeout", "5", *plain,
                                                    "--verbose", env={"MQTT_PASSWORD": WRONG_PASSWORD})),
        "wrong password (run)": (3, run_cli("run", "--connection", conn_wrong, "--operation", op, "--verbose",
                                            input=b"m")),
        "wrong key passphrase (flag)": (2, run_cli(*send, *tls_flags, "--key-password", WRONG_PASSPHRASE, "--verbose")),
        "wrong key passphrase (env)": (2, run_cli("check", *tls_flags, "--verbose",
                                                  env={"MQTT_KEY_PASSWORD": WRONG_PASSPHRASE})),
        "wrong CA with the right passphrase (run)": (3, run_cli("run", "--connection", conn_bad_ca, "--operation", op,
                                                                "--verbose", input=b"m")),
        "bad config (run)": (2, run_cli("run", "--connection", bad_config, "--operation", op, "--verbose", input=b"m")),
        "bad config (send)": (2, run_cli(*send, "--connection", bad_config, "--verbose",
                                         env={"MQTT_PASSWORD": PASSWORD})),
        "refused port": (3, run_cli(*send, "--port", str(free_port()), "--username", USER, "--password", PASSWORD,
                                    "--key-password", KEY_PASSPHRASE, "--verbose")),
        "forbidden topic (MQTT 5)": (1, run_cli("send", "--topic", "forbidden/s", "--qos", "1", "--message", "m",
                                                "--protocol", "5", *plain, "--password", PASSWORD, "--verbose",
                                                "--results", str(tmp_path / "refused.jsonl"))),
        "mutual TLS ok": (0, run_cli(*send, *tls_flags, "--verbose", "--results", str(tmp_path / "ok.jsonl"),
                                     env={"MQTT_KEY_PASSWORD": KEY_PASSPHRASE})),
    }
    for name, (code, proc) in runs.items():
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        assert proc.returncode == code, (name, proc.returncode, err)
        if code != 2:  # bad input is found before anything is logged
            assert "DEBUG" in err, name  # verbose really was on
        assert "Traceback" not in err, name
        assert_no_secret(out + err, name)
    for results in ("refused.jsonl", "ok.jsonl"):
        assert_no_secret((tmp_path / results).read_text(), results)


def test_describe_never_shows_a_secret() -> None:
    env = {"MQTT_PASSWORD": PASSWORD, "MQTT_KEY_PASSWORD": KEY_PASSPHRASE}
    for args in (["describe"], ["describe", "--json"]):
        proc = run_cli(*args, "--verbose", env=env)
        assert proc.returncode == 0
        assert_no_secret((proc.stdout + proc.stderr).decode(), " ".join(args))


def test_repr_errors_and_debug_logs_of_the_api_never_show_a_secret(setup: dict[str, Any], runtime: Runtime,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    from connector.mqtt.connection import MqttConnection

    caplog.set_level(logging.DEBUG)
    manifest = runtime.manifest()
    config = manifest.validate_connection({**setup["mtls"], "username": USER, "password": PASSWORD,
                                           "key_password": KEY_PASSPHRASE})
    conn = MqttConnection(config)
    assert_no_secret(repr(conn), "repr")
    op = {"action": "send", "topic": "allowed/r", "qos": 1}
    failing = [
        {**setup["mtls"], "key_password": WRONG_PASSPHRASE},
        {"host": "127.0.0.1", "port": setup["broker"].port, "username": USER, "password": WRONG_PASSWORD},
        {"host": "127.0.0.1", "port": setup["broker"].port, "username": USER, "password": WRONG_PASSWORD,
         "protocol": "5"},
        {"port": -1, "password": WRONG_PASSWORD, "key_password": WRONG_PASSPHRASE},
    ]
    for connection in failing:
        with pytest.raises(ConnectorError) as raised:
            list(runtime.send(connection, op, ["m"]))
        assert_no_secret(str(raised.value), "an error")
    ok = {**setup["mtls"], "key_password": KEY_PASSPHRASE}
    results = list(runtime.send(ok, op, ["m"]))
    assert results[0].ok
    assert_no_secret(json.dumps([r.to_json() for r in results]), "results")
    assert_no_secret(caplog.text, "the logs")
