"""Object-store credentials from an Airflow connection, turned into fsspec `storage_options`.

The storage layer speaks fsspec URLs + `storage_options` and knows nothing about Airflow; this is the one
place that reads the `wildocr_s3` connection. The amazon provider's hook does the resolving, so every
auth style an `aws` connection supports (keys, profile, role_arn, IAM instance role) works, and its
`get_credentials()` registers the secret and token with Airflow's log masker. The options are built
inside a running task, never stored on the operator, never pushed to XCom and never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from wildocr.airflow.settings import CONN_ID
from wildocr.storage.objectstore import is_s3_url

log = logging.getLogger(__name__)


def storage_options_for(urls: Iterable[str], conn_id: str | None = CONN_ID) -> dict[str, Any] | None:
    """fsspec options for a set of URLs: S3 options from `conn_id` if any URL is on S3, else None.

    One connection serves every S3 URL of a run (source photos, tables, staging). `conn_id=None` (or "")
    leaves S3 to s3fs's own credential chain (environment, ~/.aws, instance role).
    """
    if not any(is_s3_url(u) for u in urls if u):
        return None
    if not conn_id:
        return {}
    return s3_storage_options(conn_id)


def s3_storage_options(conn_id: str) -> dict[str, Any]:
    """s3fs keyword arguments (key, secret, token, endpoint_url, client/config kwargs) for an aws connection.

    A missing connection is not an error (the hook warns and falls back to boto's default chain, which is
    what an IAM-role deployment wants); no credentials at all means anonymous access, as the provider's
    own ObjectStoragePath filesystem does.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    config = hook.conn_config
    options: dict[str, Any] = {}
    if hook.get_session().get_credentials() is None:
        log.info("connection %r: no AWS credentials found, using anonymous S3 access", conn_id)
        options["anon"] = True
    else:
        creds = hook.get_credentials()  # frozen (refreshable ones can't change mid-read) and masked in logs
        options.update(key=creds.access_key, secret=creds.secret_key)
        if creds.token:
            options["token"] = creds.token
    if endpoint := config.get_service_endpoint_url(service_name="s3"):
        options["endpoint_url"] = endpoint
    if config.region_name:
        options["client_kwargs"] = {"region_name": config.region_name}
    if config_kwargs := config.extra_config.get("config_kwargs"):
        options["config_kwargs"] = dict(config_kwargs)  # e.g. {"s3": {"addressing_style": "path"}}
    return options
