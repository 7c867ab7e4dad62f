"""Stand-in for IAM v1 service accounts and their keys (discovery document ``iam.v1``).

IAM has no emulator, and key rotation depends on details a mock would paper over, so the keys are
real: ``keys.create`` generates a fresh RSA-2048 key and answers ``privateKeyData`` = base64 of a
Google service-account JSON key file that google-auth loads and signs with; ``keys.get`` with
``publicKeyType=TYPE_X509_PEM_FILE`` answers a self-signed X.509 certificate of the same key, so a
signature made with the file verifies against it. The private half is never stored (neither does
Google keep it). Semantics modelled on the real API:

- at most 10 USER_MANAGED keys per account, disabled keys included; the 11th create answers
  400 FAILED_PRECONDITION "Precondition check failed." (no reason given, as IAM does today);
- ``keys.list`` without ``keyTypes`` includes one SYSTEM_MANAGED key per account;
- keys without an expiry report ``validBeforeTime`` 9999-12-31T23:59:59Z;
- ``projects/-/...``: a key or account that does not exist answers 403 PERMISSION_DENIED, not 404
  (the discovery document warns about exactly this); with the real project id it is 404.

Organization policy the way IAM enforces it: ``POST /_standin/iam/policy``
``{"project": "p", "creation_blocked_by": "iam.disableServiceAccountKeyCreation"|null,
"expiry_hours": 24|null}`` sets the effective policy of a project (the project in the account's
e-mail). A blocked create answers 400 FAILED_PRECONDITION "Key creation is not allowed on this
service account." with a PreconditionFailure naming ``constraints/<constraint>``; an expiry makes
new keys ``validBeforeTime = create + hours``. ``GET /_standin/iam/policy?project=p`` reads it back.
``POST /_standin/clock {"offset_seconds": N}`` shifts the stand-in's clock (key times).

Run: ``python -m gatehouse.local.standins.iam --port 8604 [--state-file F]``; in-process
``start(port=0, clock=...)``. Point clients at it with ``api_endpoint=handle.url`` and anonymous
credentials.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request

from gatehouse.local.standins.server import (
    ApiError,
    Call,
    Handle,
    StandIn,
    base_parser,
    handles,
    page_of,
    precondition_failure,
    run_forever,
    serve,
)

KEY_LIMIT = 10
NO_EXPIRY = "9999-12-31T23:59:59Z"
ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
BLOCKING_CONSTRAINTS = (
    "iam.disableServiceAccountKeyCreation",
    "iam.managed.disableServiceAccountKeyCreation",
)
BLOCKED_MESSAGE = (
    "Key creation is not allowed on this service account. Please check if service account key creation "
    "is restricted by organization policies (constraints/{constraint})."
)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def new_key_pair() -> tuple[str, bytes]:
    """A fresh RSA-2048 key: (PKCS#8 private PEM, public key PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, public


def self_signed_certificate(
    private_pem: str, subject: str, valid_after: datetime, valid_before: datetime
) -> bytes:
    """A PEM X.509 certificate for the key, as IAM serves ``TYPE_X509_PEM_FILE``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):  # pragma: no cover - we only make RSA keys
        raise TypeError("expected an RSA key")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_after)
        .not_valid_after(valid_before)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def key_file(email: str, project: str, key_id: str, private_pem: str, client_id: str) -> bytes:
    """The JSON key file IAM returns (base64) in ``privateKeyData``."""
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        + email.replace("@", "%40"),
        "universe_domain": "googleapis.com",
    }
    return json.dumps(info, indent=2).encode()


class Iam(StandIn):
    API = "iam.v1"
    EXTRA_APIS = ("iamcredentials.v1",)
    NAME = "iam"

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        state_file: str | None = None,
        check_fields: bool = False,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._unsaved_system_key = False  # a read added the account's system-managed key
        super().__init__(state_file=state_file, check_fields=check_fields)
        self.extra_routes[("POST", "/_standin/iam/policy")] = self._set_policy
        self.extra_routes[("GET", "/_standin/iam/policy")] = self._get_policy
        self.extra_routes[("POST", "/_standin/clock")] = self._shift_clock

    def initial_state(self) -> dict[str, Any]:
        # accounts: email -> ServiceAccount JSON; keys: email -> key id -> record (no private key);
        # policies: project -> {"creation_blocked_by", "expiry_hours"}
        return {"accounts": {}, "keys": {}, "policies": {}, "clock_offset": 0.0}

    def now(self) -> datetime:
        return self._clock() + timedelta(seconds=float(self.state.get("clock_offset", 0.0)))

    # -- test hooks ---------------------------------------------------------------------------

    def set_policy(self, project: str, creation_blocked_by: str | None, expiry_hours: int | None) -> None:
        if creation_blocked_by is not None and creation_blocked_by not in BLOCKING_CONSTRAINTS:
            raise ApiError(
                400, f"creation_blocked_by must be one of {', '.join(BLOCKING_CONSTRAINTS)} or null"
            )
        if expiry_hours is not None and (not isinstance(expiry_hours, int) or expiry_hours <= 0):
            raise ApiError(400, "expiry_hours must be a positive integer or null")
        with self.lock:
            self.state["policies"][project] = {
                "creation_blocked_by": creation_blocked_by,
                "expiry_hours": expiry_hours,
            }
            self.changed()

    def policy(self, project: str) -> dict[str, Any]:
        return dict(
            self.state["policies"].get(project) or {"creation_blocked_by": None, "expiry_hours": None}
        )

    def _set_policy(self, request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("project"), str):
            raise ApiError(400, 'body must be {"project", "creation_blocked_by", "expiry_hours"}')
        self.set_policy(body["project"], body.get("creation_blocked_by"), body.get("expiry_hours"))
        return {"project": body["project"], **self.policy(body["project"])}

    def _get_policy(self, request: Request) -> dict[str, Any]:
        project = request.args.get("project") or ""
        return {"project": project, **self.policy(project)}

    def _shift_clock(self, request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True) or {}
        offset = body.get("offset_seconds")
        if not isinstance(offset, int | float):
            raise ApiError(400, 'body must be {"offset_seconds": N}')
        self.state["clock_offset"] = float(offset)
        self.changed()
        return {"now": rfc3339(self.now())}

    # -- accounts -----------------------------------------------------------------------------

    def _resolve(self, name: str, *, permission: str) -> dict[str, Any]:
        """The account ``projects/{p}/serviceAccounts/{email|uniqueId}``: 404 when missing, or 403
        when the project is the ``-`` wildcard (as IAM answers)."""
        parts = name.split("/")
        project, ident = parts[1], parts[3]
        account = self.state["accounts"].get(ident)
        if account is None:
            account = next((a for a in self.state["accounts"].values() if a["uniqueId"] == ident), None)
        if account is not None and project in ("-", account["projectId"]):
            return account  # type: ignore[no-any-return]
        if project == "-":
            raise ApiError(
                403,
                f"Permission '{permission}' denied on resource (or it may not exist).",
                "PERMISSION_DENIED",
            )
        raise ApiError(404, f"Service account projects/{project}/serviceAccounts/{ident} does not exist.")

    def add_account(self, email: str, display_name: str = "") -> dict[str, Any]:
        """Seed an account directly (tests); ``serviceAccounts.create`` does the same over HTTP."""
        domain = email.partition("@")[2]
        project = domain.split(".", 1)[0]
        with self.lock:
            if email in self.state["accounts"]:
                return self.state["accounts"][email]  # type: ignore[no-any-return]
            unique = "1" + "".join(secrets.choice("0123456789") for _ in range(20))
            account = {
                "name": f"projects/{project}/serviceAccounts/{email}",
                "projectId": project,
                "uniqueId": unique,
                "email": email,
                "etag": _b64(secrets.token_bytes(8)),
                "oauth2ClientId": unique,
            }
            if display_name:
                account["displayName"] = display_name
            self.state["accounts"][email] = account
            self.state["keys"].setdefault(email, {})
            self.changed()
            return account

    @handles("POST", "iam.projects.serviceAccounts.create")
    def create_account(self, call: Call) -> dict[str, Any]:
        project = call.params["name"].split("/")[1]
        body = call.json() or {}
        account_id = str(body.get("accountId") or "")
        if not ACCOUNT_ID.match(account_id):
            raise ApiError(
                400,
                f"Invalid account ID {account_id!r}: 6-30 lowercase letters, digits or hyphens, starting "
                "with a letter and not ending with a hyphen.",
            )
        email = f"{account_id}@{project}.iam.gserviceaccount.com"
        if email in self.state["accounts"]:
            raise ApiError(
                409,
                f"Service account {account_id} already exists within project {project}.",
                "ALREADY_EXISTS",
            )
        spec = body.get("serviceAccount") or {}
        account = self.add_account(email, str(spec.get("displayName") or ""))
        if spec.get("description"):
            account["description"] = str(spec["description"])
            self.changed()
        return account

    # -- IAM Credentials: ID tokens ------------------------------------------------------------

    @handles("POST", "iamcredentials.projects.serviceAccounts.generateIdToken")
    def generate_id_token(self, call: Call) -> dict[str, Any]:
        """A signed RS256 ID token (Google's claims) for an account that exists; the stand-in signs
        with its own key, so services on the stack check the claims, not Google's signature."""
        name = call.params["name"]
        if name.split("/")[1] != "-":
            raise ApiError(400, "The `-` wildcard character is required in the project of the name.")
        body = call.json() or {}
        audience = body.get("audience")
        if not isinstance(audience, str) or not audience:
            raise ApiError(400, "audience is required")
        account = self._resolve(name, permission="iam.serviceAccounts.getOpenIdToken")
        now = int(self.now().timestamp())
        claims: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "azp": account["uniqueId"],
            "sub": account["uniqueId"],
            "iat": now,
            "exp": now + 3600,
        }
        if body.get("includeEmail"):
            claims.update(email=account["email"], email_verified=True)
        return {"token": self._sign(claims)}

    def _sign(self, claims: dict[str, Any]) -> str:
        from google.auth import crypt, jwt

        if not hasattr(self, "_token_signer"):
            pem, _ = new_key_pair()
            self._token_signer = crypt.RSASigner.from_string(pem, key_id="standin")
        return str(jwt.encode(self._token_signer, claims).decode("ascii"))

    @handles("GET", "iam.projects.serviceAccounts.get")
    def get_account(self, call: Call) -> dict[str, Any]:
        return self._resolve(call.params["name"], permission="iam.serviceAccounts.get")

    @handles("GET", "iam.projects.serviceAccounts.list")
    def list_accounts(self, call: Call) -> dict[str, Any]:
        project = call.params["name"].split("/")[1]
        found = sorted(
            (a for a in self.state["accounts"].values() if a["projectId"] == project),
            key=lambda a: a["email"],
        )
        return page_of(call, found, "accounts", default_size=20, max_size=100)

    # -- keys ---------------------------------------------------------------------------------

    def _keys(self, account: dict[str, Any]) -> dict[str, dict[str, Any]]:
        keys = self.state["keys"].setdefault(account["email"], {})
        if not any(k["keyType"] == "SYSTEM_MANAGED" for k in keys.values()):
            self._unsaved_system_key = True
            # Google keeps one key of its own per account (rotated by Google, never downloadable)
            now = self.now()
            key_id = secrets.token_hex(20)
            keys[key_id] = {
                "id": key_id,
                "keyType": "SYSTEM_MANAGED",
                "validAfterTime": rfc3339(now - timedelta(days=3)),
                "validBeforeTime": rfc3339(now + timedelta(days=11)),
                "disabled": False,
            }
        return keys  # type: ignore[no-any-return]

    def _key(self, name: str, permission: str) -> tuple[dict[str, Any], dict[str, Any]]:
        parts = name.split("/")
        account = self._resolve("/".join(parts[:4]), permission=permission)
        key = self._keys(account).get(parts[5])
        if key is None:
            if parts[1] == "-":
                raise ApiError(
                    403,
                    f"Permission '{permission}' denied on resource (or it may not exist).",
                    "PERMISSION_DENIED",
                )
            raise ApiError(404, f"Service account key {name} does not exist.")
        return account, key

    @staticmethod
    def _view(account: dict[str, Any], key: dict[str, Any]) -> dict[str, Any]:
        """The ServiceAccountKey resource (no key material)."""
        out: dict[str, Any] = {
            "name": f"projects/{account['projectId']}/serviceAccounts/{account['email']}/keys/{key['id']}",
            "validAfterTime": key["validAfterTime"],
            "validBeforeTime": key["validBeforeTime"],
            "keyAlgorithm": "KEY_ALG_RSA_2048",
            "keyOrigin": "GOOGLE_PROVIDED",
            "keyType": key["keyType"],
        }
        if key["keyType"] == "USER_MANAGED":
            out["privateKeyType"] = "TYPE_GOOGLE_CREDENTIALS_FILE"
        if key["disabled"]:
            out["disabled"] = True
            out["disableReason"] = "SERVICE_ACCOUNT_KEY_DISABLE_REASON_USER_INITIATED"
        return out

    @handles("POST", "iam.projects.serviceAccounts.keys.create")
    def create_key(self, call: Call) -> dict[str, Any]:
        account = self._resolve(call.params["name"], permission="iam.serviceAccountKeys.create")
        body = call.json() or {}
        key_type = body.get("privateKeyType", "TYPE_GOOGLE_CREDENTIALS_FILE")
        algorithm = body.get("keyAlgorithm", "KEY_ALG_RSA_2048")
        if key_type not in ("TYPE_GOOGLE_CREDENTIALS_FILE", "TYPE_UNSPECIFIED", 0, 2):
            raise ApiError(400, "The stand-in issues TYPE_GOOGLE_CREDENTIALS_FILE keys only.")
        if algorithm not in ("KEY_ALG_RSA_2048", "KEY_ALG_UNSPECIFIED", 0, 2):
            raise ApiError(400, "The stand-in issues KEY_ALG_RSA_2048 keys only.")
        policy = self.policy(account["projectId"])
        blocked = policy["creation_blocked_by"]
        if blocked:
            message = BLOCKED_MESSAGE.format(constraint=blocked)
            raise ApiError(
                400,
                message,
                "FAILED_PRECONDITION",
                [
                    precondition_failure(
                        [
                            {
                                "type": f"constraints/{blocked}",
                                "subject": f"projects/{account['projectId']}",
                                "description": "Key creation is not allowed on this service account.",
                            }
                        ]
                    )
                ],
            )
        keys = self._keys(account)
        if sum(1 for k in keys.values() if k["keyType"] == "USER_MANAGED") >= KEY_LIMIT:
            raise ApiError(400, "Precondition check failed.", "FAILED_PRECONDITION")
        now = self.now().replace(microsecond=0)
        key_id = secrets.token_hex(20)
        private_pem, public_pem = new_key_pair()
        expiry = policy["expiry_hours"]
        valid_before = now + timedelta(hours=expiry) if expiry else None
        cert = self_signed_certificate(
            private_pem,
            account["uniqueId"],
            now,
            valid_before or datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        )
        key = {
            "id": key_id,
            "keyType": "USER_MANAGED",
            "validAfterTime": rfc3339(now),
            "validBeforeTime": rfc3339(valid_before) if valid_before else NO_EXPIRY,
            "disabled": False,
            "certificate": cert.decode("ascii"),
            "publicKey": public_pem.decode("ascii"),
        }
        keys[key_id] = key
        self.changed()
        data = key_file(
            account["email"], account["projectId"], key_id, private_pem, account["oauth2ClientId"]
        )
        return {**self._view(account, key), "privateKeyData": _b64(data)}

    @handles("GET", "iam.projects.serviceAccounts.keys.list")
    def list_keys(self, call: Call) -> dict[str, Any]:
        account = self._resolve(call.params["name"], permission="iam.serviceAccountKeys.list")
        wanted = set(call.query.getlist("keyTypes"))
        names = {"1": "USER_MANAGED", "2": "SYSTEM_MANAGED"}  # enum-encoding=int clients
        wanted = {names.get(w, w) for w in wanted}
        if "KEY_TYPE_UNSPECIFIED" in wanted or "0" in wanted:
            raise ApiError(400, "Invalid key type: KEY_TYPE_UNSPECIFIED.")
        keys = [
            self._view(account, k)
            for k in sorted(self._keys(account).values(), key=lambda k: (k["validAfterTime"], k["id"]))
            if not wanted or k["keyType"] in wanted
        ]
        if self._unsaved_system_key:
            self._unsaved_system_key = False
            self.changed()
        return {"keys": keys} if keys else {}

    @handles("GET", "iam.projects.serviceAccounts.keys.get")
    def get_key(self, call: Call) -> dict[str, Any]:
        account, key = self._key(call.params["name"], "iam.serviceAccountKeys.get")
        out = self._view(account, key)
        kind = call.arg("publicKeyType") or "TYPE_NONE"
        if kind in ("TYPE_X509_PEM_FILE", "TYPE_RAW_PUBLIC_KEY"):
            if "certificate" not in key:  # a system-managed key: make its key pair on first use
                private_pem, public_pem = new_key_pair()
                after = datetime.fromisoformat(key["validAfterTime"].replace("Z", "+00:00"))
                before = datetime.fromisoformat(key["validBeforeTime"].replace("Z", "+00:00"))
                key["certificate"] = self_signed_certificate(
                    private_pem, account["uniqueId"], after, before
                ).decode("ascii")
                key["publicKey"] = public_pem.decode("ascii")
                self.changed()
            field = "certificate" if kind == "TYPE_X509_PEM_FILE" else "publicKey"
            out["publicKeyData"] = _b64(key[field].encode("ascii"))
        elif kind != "TYPE_NONE":
            raise ApiError(400, f"Invalid value at 'public_key_type', \"{kind}\"")
        return out

    def _set_disabled(self, call: Call, disabled: bool) -> dict[str, Any]:
        verb = "disable" if disabled else "enable"
        _, key = self._key(call.params["name"], f"iam.serviceAccountKeys.{verb}")
        if key["keyType"] != "USER_MANAGED":
            raise ApiError(400, f"Cannot {verb} a system-managed key.", "FAILED_PRECONDITION")
        key["disabled"] = disabled
        self.changed()
        return {}

    @handles("POST", "iam.projects.serviceAccounts.keys.disable")
    def disable_key(self, call: Call) -> dict[str, Any]:
        return self._set_disabled(call, True)

    @handles("POST", "iam.projects.serviceAccounts.keys.enable")
    def enable_key(self, call: Call) -> dict[str, Any]:
        return self._set_disabled(call, False)

    @handles("DELETE", "iam.projects.serviceAccounts.keys.delete")
    def delete_key(self, call: Call) -> dict[str, Any]:
        account, key = self._key(call.params["name"], "iam.serviceAccountKeys.delete")
        if key["keyType"] != "USER_MANAGED":
            raise ApiError(400, "Cannot delete a system-managed key.", "FAILED_PRECONDITION")
        del self.state["keys"][account["email"]][key["id"]]
        self.changed()
        return {}

    # -- inspection for tests (no HTTP) ----------------------------------------------------------

    def user_keys(self, email: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {
                k: dict(v)
                for k, v in self.state["keys"].get(email, {}).items()
                if v["keyType"] == "USER_MANAGED"
            }


def start(port: int = 0, **opts: Any) -> Handle:
    """Serve an :class:`Iam` stand-in in this process (``opts`` as its constructor takes)."""
    return serve(Iam(**opts), port)


def main(argv: list[str] | None = None) -> None:
    args = base_parser("IAM v1 service accounts and keys stand-in").parse_args(argv)
    run_forever(Iam(state_file=args.state_file, check_fields=args.check_fields), args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
