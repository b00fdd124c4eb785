"""Microsoft's own Key Vault client, run against skm-testing's Key Vault test server.

Every operation skm's Azure backend uses goes through `azure-keyvault-secrets` and `azure-identity` here; an
assertion failing, or the client raising where Azure would not, means the server disagrees with Azure.
Configured by env: KV_URL, KV_TENANT, KV_CLIENT, KV_SECRET, KV_CA.
"""

import datetime
import os
import sys

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

url = os.environ["KV_URL"]
ca = os.environ["KV_CA"]
cred = ClientSecretCredential(
    os.environ["KV_TENANT"],
    os.environ["KV_CLIENT"],
    os.environ["KV_SECRET"],
    authority=url,
    disable_instance_discovery=True,
    connection_verify=ca,
)
client = SecretClient(url, cred, verify_challenge_resource=False, connection_verify=ca)
step = "start"


def check(cond, what):
    if not cond:
        raise AssertionError(f"{step}: {what}")


# Set and get: latest (both URL shapes the SDKs use) and by version.
step = "set/get"
s1 = client.set_secret("judge-plain", "one", content_type="text/plain", tags={"team": "a"})
check(s1.value == "one" and s1.properties.version and len(s1.properties.version) == 32, "set returns value and version")
s2 = client.set_secret("judge-plain", "two")
check(client.get_secret("judge-plain").value == "two", "latest is the newest")
check(client.get_secret("judge-plain", s1.properties.version).value == "one", "get by version")
check(client.get_secret("JUDGE-PLAIN").value == "two", "names are case-insensitive")
got = client.get_secret("judge-plain", s1.properties.version)
check(got.properties.content_type == "text/plain" and got.properties.tags == {"team": "a"}, "content type and tags per version")
check(got.properties.created_on is not None and got.properties.enabled, "attributes")

# Missing.
step = "missing"
try:
    client.get_secret("judge-never-written")
    check(False, "missing secret must raise")
except ResourceNotFoundError as e:
    check(e.status_code == 404 and e.error.code == "SecretNotFound", f"404 SecretNotFound, got {e.error.code}")

# nbf / exp stored and returned (not enforced).
step = "nbf/exp"
nbf = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
exp = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
client.set_secret("judge-dates", "x", not_before=nbf, expires_on=exp)
got = client.get_secret("judge-dates")
check(got.properties.not_before == nbf and got.properties.expires_on == exp, "dates round trip")
check(got.value == "x", "Key Vault does not enforce nbf")

# Update: disable, tags, content type, dates; a disabled secret is 403 on read.
step = "update"
props = client.update_secret_properties("judge-plain", s2.properties.version, enabled=False, tags={"t": "u"}, content_type="application/json")
check(props.enabled is False and props.tags == {"t": "u"} and props.content_type == "application/json", "update answer")
try:
    client.get_secret("judge-plain")
    check(False, "disabled secret must raise")
except HttpResponseError as e:
    check(e.status_code == 403 and e.error.code == "Forbidden", f"403 Forbidden, got {e.status_code} {e.error and e.error.code}")
check(client.get_secret("judge-plain", s1.properties.version).value == "one", "an older enabled version still reads")
client.update_secret_properties("judge-plain", enabled=True)
check(client.get_secret("judge-plain").value == "two", "re-enabled (update without a version = latest)")

# Versions and secrets lists, with paging (the server's page size is small).
step = "list versions"
for i in range(5):
    client.set_secret("judge-many", f"v{i}")
versions = list(client.list_properties_of_secret_versions("judge-many"))
check(len(versions) == 5 and len({v.version for v in versions}) == 5, f"5 versions, got {len(versions)}")
step = "list secrets"
for i in range(7):
    client.set_secret(f"judge-list-{i}", "x", tags={"i": str(i)})
names = sorted(p.name for p in client.list_properties_of_secrets())
check([n for n in names if n.startswith("judge-list-")] == [f"judge-list-{i}" for i in range(7)], f"list: {names}")
check(len(names) == 7 + 3, f"every secret listed once: {names}")

# Soft delete: deleted secrets get/list, the name is held (409), recover, delete again, purge.
step = "delete"
deleted = client.begin_delete_secret("judge-many").result()
check(deleted.name == "judge-many" and deleted.recovery_id and deleted.deleted_date, "deleted secret")
try:
    client.get_secret("judge-many")
    check(False, "deleted secret must not read")
except ResourceNotFoundError:
    pass
check(client.get_deleted_secret("judge-many").name == "judge-many", "get deleted")
check([d.name for d in client.list_deleted_secrets()] == ["judge-many"], "list deleted")
step = "conflict"
try:
    client.set_secret("judge-many", "reuse")
    check(False, "a soft-deleted name must not be reusable")
except ResourceExistsError as e:
    check(e.status_code == 409, "409")
step = "recover"
client.begin_recover_deleted_secret("judge-many").result()
check(client.get_secret("judge-many").value == "v4", "recovered with its versions")
check(len(list(client.list_properties_of_secret_versions("judge-many"))) == 5, "all versions recovered")
step = "purge"
client.begin_delete_secret("judge-many").result()
client.purge_deleted_secret("judge-many")
try:
    client.get_deleted_secret("judge-many")
    check(False, "purged secret is gone")
except ResourceNotFoundError:
    pass
client.set_secret("judge-many", "new life")
check(len(list(client.list_properties_of_secret_versions("judge-many"))) == 1, "a purged name starts afresh")

# A wrong client secret fails at the token endpoint.
step = "wrong secret"
bad = SecretClient(
    url,
    ClientSecretCredential(os.environ["KV_TENANT"], os.environ["KV_CLIENT"], "wrong", authority=url,
                           disable_instance_discovery=True, connection_verify=ca),
    verify_challenge_resource=False,
    connection_verify=ca,
)
try:
    bad.get_secret("judge-plain")
    check(False, "a wrong client secret must fail")
except Exception as e:  # ClientAuthenticationError
    check("AADSTS7000215" in str(e), f"invalid_client, got {e}")

print("judge: all operations agree")
sys.exit(0)
