"""Serving: a free port on loopback, HTTPS when given a certificate, no exposure without a token."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest

from amlwait.workspace import LocalWorkspace, ScriptedWorkspace
from amlwait.workspace.server import is_loopback
from tests.workspace.helpers import WORKSPACE, arm_client, get, job_path


def _self_signed(directory: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_endpoint_is_loopback_on_a_free_port(local_workspace: LocalWorkspace) -> None:
    url = httpx.URL(local_workspace.endpoint)

    assert url.scheme == "http"
    assert url.host == "127.0.0.1"
    assert url.port is not None and url.port > 0


def test_https_when_given_a_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))

    with (
        LocalWorkspace(tmp_path / "data", tls_cert=cert, tls_key=key) as workspace,
        arm_client(workspace.endpoint, verify=trust) as client,
    ):
        response = get(client, job_path("no_job"))
        listed = get(client, f"{WORKSPACE.arm_path}/jobs")

    assert workspace.endpoint.startswith("https://127.0.0.1:")
    assert response.status_code == 404
    assert listed.status_code == 200


def test_certificate_without_key_is_refused(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)

    with pytest.raises(ValueError, match="both a certificate and a key"):
        LocalWorkspace(tmp_path / "data", tls_cert=cert).start()


def test_non_loopback_hosts_need_a_token(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    with pytest.raises(ValueError, match="without a token"):
        ScriptedWorkspace(host="0.0.0.0")
    with pytest.raises(ValueError, match="without a token"):
        LocalWorkspace(tmp_path, host="10.0.0.1")


def test_faults_work_in_real_mode_too(
    local_workspace: LocalWorkspace, local_client: httpx.Client
) -> None:
    local_workspace.faults.add("503", retry_after=2)

    first = get(local_client, job_path("any_job"))
    second = get(local_client, job_path("any_job"))

    assert (first.status_code, first.headers["retry-after"]) == (503, "2")
    assert second.status_code == 404
    assert [r.status for r in local_workspace.requests] == [503, 404]


def test_a_second_start_is_refused(local_workspace: LocalWorkspace) -> None:
    with pytest.raises(RuntimeError, match="already started"):
        local_workspace.start()
