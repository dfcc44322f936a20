"""DAG Params as the operators receive them: dates, the source prefix template, flags and numbers.

Params arrive rendered: typed with `render_template_as_native_obj=True` (None when unset), strings
otherwise ('None' when unset). A bad value fails the task with `AirflowFailException`: no retry fixes it.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context


def is_unset(value: Any) -> bool:
    """Params render to None (native templates) or 'None'/'' (string templates) when not given."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


def as_bool(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def as_positive_int(value: Any, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise AirflowFailException(f"{what} must be a positive integer, got {value!r}")
    return number


def as_choice(value: Any, choices: tuple[str, ...], default: str, what: str) -> str:
    choice = default if is_unset(value) else str(value).strip()
    if choice not in choices:
        raise AirflowFailException(f"{what} must be one of {choices}, got {choice!r}")
    return choice


def engine_options(value: Any) -> dict[str, Any]:
    """The `engine_options` Param, checked against the engine's config (a bad key fails the run now)."""
    import json

    from wildocr.pipeline.options import validate_engine_options

    if is_unset(value):
        return {}
    if isinstance(value, str):  # a string template renders the object as JSON
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise AirflowFailException(f"engine_options must be a JSON object: {exc}") from None
    if not isinstance(value, Mapping):
        raise AirflowFailException(f"engine_options must be an object of option: value, got {value!r}")
    try:
        return validate_engine_options(value)
    except ValueError as exc:
        raise AirflowFailException(f"engine_options: {exc}") from None


def model_dir(value: Any) -> str | None:
    """A model folder (the `model_dir` Param or Variable), checked the way the engine loads it: a broken
    folder fails the run now. None = the stock weights."""
    from wildocr.pipeline.options import validate_model_dir

    if is_unset(value):
        return None
    try:
        return validate_model_dir(str(value))
    except ValueError as exc:
        raise AirflowFailException(str(exc)) from None


def _date(value: Any, what: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise AirflowFailException(f"{what} must be a date YYYY-MM-DD, got {value!r}") from None


def resolve_dates(dt: Any, dt_end: Any, context: Context) -> list[str]:
    """The partitions a run writes: `dt` (..`dt_end`), else the run's `ds`, else the day before `run_after`.

    Scheduled and backfill runs have a logical date, so `ds` is the data date. A manual run triggered
    without one (Airflow 3's default) has `ds` None; it then processes yesterday (UTC) relative to when it
    was triggered, which is what the latest scheduled run would have processed.
    """
    if not is_unset(dt):
        first = _date(dt, "dt")
    elif context.get("ds"):
        first = _date(context["ds"], "ds")
    else:
        run_after = context["dag_run"].run_after
        first = run_after.astimezone(_dt.UTC).date() - _dt.timedelta(days=1)
    last = first if is_unset(dt_end) else _date(dt_end, "dt_end")
    if last < first:
        raise AirflowFailException(f"dt_end {last} is before dt {first}")
    n = (last - first).days + 1
    return [(first + _dt.timedelta(days=i)).isoformat() for i in range(n)]


def render_source_prefix(template: str, dt: str, context: Context) -> str:
    """Render a source-prefix template for one date with only what a prefix needs: `ds` (= `dt`),
    `ds_nodash`, `year`, `month`, `day` and `params` (the run's Param values).

    Done here rather than by Airflow's templating because the template usually comes from a Variable or
    a Param (rendered once by Airflow, still holding `{{ ds }}`) and because a range run renders it once
    per date. Deliberately no `var`, `conn` or `macros`: a Param is typed in by whoever triggers a run, and
    `{{ var.value.x }}` in it would print a Variable into the task log (and into every row's URI). A
    sandboxed, immutable Jinja environment; an unknown name fails the task (no retry) instead of giving a
    wrong prefix.
    """
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    day = _dt.date.fromisoformat(dt)
    params = context.get("params") or {}
    names = {
        "ds": dt,
        "dt": dt,
        "ds_nodash": dt.replace("-", ""),
        "year": f"{day.year:04d}",
        "month": f"{day.month:02d}",
        "day": f"{day.day:02d}",
        "params": {key: params[key] for key in params},
    }
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    try:
        return env.from_string(template).render(**names)
    except TemplateError as exc:
        raise AirflowFailException(
            f"source prefix template: {exc}; it may use {', '.join(sorted(names))} (nothing else)"
        ) from None


def mask_url_password(url: str) -> None:
    """Register the password of a `scheme://user:password@host/` URL with Airflow's log masker."""
    from urllib.parse import urlsplit

    from airflow.sdk.log import mask_secret

    try:
        password = urlsplit(url).password
    except ValueError:
        return
    if password:
        mask_secret(password)
